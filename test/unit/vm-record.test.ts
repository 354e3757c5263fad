import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendLog, parseVmRecord, RECORD_LOG_LINES } from '../../src/contract/vm-record.js';

const UUID = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
const ok = { uuid: UUID, name: 'web-1', spec: { memory: 256, boot: { kernel: '/srv/k/vmlinuz' } } };

describe('VM record schema', () => {
  it('accepts the contract example and fills defaults, keeping unknown fields', () => {
    const r = parseVmRecord(JSON.stringify({ ...ok, extra: { a: 1 }, spec: { ...ok.spec, extra_spec: true } }), UUID);
    assert.ok(r.ok);
    assert.equal(r.value.spec.vcpus, 1);
    assert.equal(r.value.spec.vnc, 'unix');
    assert.equal(r.value.spec.restart, 'always');
    assert.deepEqual((r.value as Record<string, unknown>).extra, { a: 1 });
    assert.equal((r.value.spec as Record<string, unknown>).extra_spec, true);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['neither boot nor disks', { ...ok, spec: { memory: 64 } }, /needs "boot" or at least one disk/],
    ['a relative kernel path', { ...ok, spec: { memory: 64, boot: { kernel: 'vmlinuz' } } }, /spec\.boot\.kernel/],
    ['a disk with both image and path', { ...ok, spec: { memory: 64, disks: [{ image: 'x', path: '/a' }] } }, /exactly one of/],
    ['a bridge name with a slash', { ...ok, spec: { ...ok.spec, nics: [{ network: 'br/0' }] } }, /spec\.nics\.0\.network/],
    ['an unknown status', { ...ok, status: 'RUN' }, /Field status/],
    ['memory as a string', { ...ok, spec: { ...ok.spec, memory: '256' } }, /spec\.memory/],
    ['upper-case name', { ...ok, name: 'Web' }, /Field name/],
    ['a uuid that is not the key', { ...ok, uuid: '00000000-0000-4000-8000-000000000000' }, /does not match the key/],
    ['an array', [ok], /must be a JSON object/],
  ];
  for (const [what, value, pattern] of bad) {
    it(`rejects ${what} with one sentence`, () => {
      const r = parseVmRecord(JSON.stringify(value), UUID);
      assert.ok(!r.ok);
      assert.match(r.error, pattern);
      assert.match(r.error, /\.$/);
      assert.doesNotMatch(r.error, /\n/);
    });
  }

  it('keeps the last lines of the record log, newest last', () => {
    let log: string[] = [];
    for (let i = 0; i < 15; i++) log = appendLog(log, `line ${i}`, new Date(Date.UTC(2026, 10, 22, 9, 0, i)));
    assert.equal(log.length, RECORD_LOG_LINES);
    assert.equal(log.at(-1), '2026-11-22T09:00:14.000Z - line 14');
  });
});
