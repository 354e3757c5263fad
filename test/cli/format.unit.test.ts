import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { formatCell, getField, matchesFilters, parseFilters } from '../../src/cli/output/fields.js';
import { formatTable } from '../../src/cli/output/table.js';
import { formatUsageError } from '../../src/cli/report-error.js';
import { prepareVmRecord } from '../../src/vm-ops/prepare-vm.js';
import { selectVm } from '../../src/vm-ops/resolve-vm.js';
import { keySpace } from '../../src/contract/keys.js';
import { toStoredVm } from '../../src/store/vm-repository.js';
import { DroverError } from '../../src/lib/errors.js';

const keys = keySpace('/t');
function stored(uuid: string, name: string) {
  return toStoredVm({ key: keys.vm(uuid), raw: JSON.stringify({ uuid, name }), modRevision: '1', createRevision: '1', lease: '0' }, keys);
}

describe('CLI formatting and parsing (unit)', () => {
  it('formats an aligned table, right-aligning numbers, without trailing blanks', () => {
    const out = formatTable(['name', 'memory', 'host'], [['a', '256', '-'], ['long-name', '16384', 'hv1']], { header: true });
    assert.equal(out, 'NAME       MEMORY  HOST\na             256  -\nlong-name   16384  hv1\n');
    assert.equal(formatTable(['name'], [['a']], { header: false }), 'a\n');
  });

  it('reads dotted fields and formats cells', () => {
    const rec = { spec: { memory: 256, disks: [{ image: 'x' }] }, host: '' };
    assert.equal(getField(rec, 'spec.memory'), 256);
    assert.equal(getField(rec, 'spec.nope.deeper'), undefined);
    assert.equal(formatCell(getField(rec, 'spec.disks')), '[{"image":"x"}]');
    assert.equal(formatCell(rec.host), '-');
    assert.equal(formatCell('two\nlines'), 'two lines');
  });

  it('filters field=value, where an empty value matches absent', () => {
    const [f1, f2] = parseFilters(['status=RUNNING', 'host=']);
    assert.ok(f1 && f2);
    assert.equal(matchesFilters({ status: 'RUNNING' }, [f1, f2]), true);
    assert.equal(matchesFilters({ status: 'RUNNING', host: 'hv1' }, [f1, f2]), false);
    assert.throws(() => parseFilters(['=x']), (e: unknown) => e instanceof DroverError && e.code === 'USAGE');
  });

  it('resolves a VM by uuid, prefix or name; a name that is also a prefix elsewhere is ambiguous', () => {
    const a = stored('abcd0000-0000-4000-8000-000000000001', 'web');
    const b = stored('beef0000-0000-4000-8000-000000000002', 'abcd');
    assert.equal(selectVm([a, b], 'web'), a);
    assert.equal(selectVm([a, b], 'beef0'), b);
    assert.equal(selectVm([a, b], a.uuid), a);
    assert.throws(() => selectVm([a, b], 'abcd'), (e: unknown) => e instanceof DroverError && e.code === 'AMBIGUOUS');
    assert.throws(() => selectVm([a, b], 'abc'), /at least 4 characters/);
  });

  it('prepares a record: defaults filled, unknown fields kept, schema sentence on error', () => {
    const fixed = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
    const rec = prepareVmRecord({ name: 'a', spec: { memory: 64, boot: { kernel: '/k' }, vnc: 'none' }, x: 1 }, () => fixed);
    assert.deepEqual(rec, { uuid: fixed, name: 'a', spec: { memory: 64, boot: { kernel: '/k' }, vnc: 'none', vcpus: 1, restart: 'always' }, x: 1, status: 'REQUESTED_NEW' });
    assert.throws(() => prepareVmRecord({ name: 'a', spec: { memory: 64, boot: { kernel: '/k' } } }, () => 'not-a-uuid'), /^DroverError: Field uuid is invalid/);
    assert.throws(() => prepareVmRecord({ name: 'a', spec: { memory: 64 } }, () => '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59'), /"boot" or at least one disk/);
    assert.throws(() => prepareVmRecord([], () => 'x'), /must be a JSON object/);
  });

  it('turns commander errors into one drover sentence', () => {
    const cmd = new Command('drover').command('vm').command('list');
    assert.equal(formatUsageError("error: unknown option '--jsn'\n(Did you mean --json?)\n", cmd), "drover: unknown option '--jsn' (did you mean --json?); see `drover vm list --help`.\n");
    assert.equal(formatUsageError('error: too many arguments. Expected 1 argument but got 2.\n', cmd), 'drover: too many arguments; expected 1 argument but got 2; see `drover vm list --help`.\n');
  });
});
