import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { acceptProblem } from '../../src/agent/plan-snapshot.js';
import { planVm, type Step } from '../../src/agent/plan-vm.js';
import {
  checkSnapshotRequest,
  mergeDiskSnapshots,
  snapshotNameProblem,
  snapshotsNewerThan,
  type DiskSnapshots,
} from '../../src/contract/snapshot.js';
import { parseVmRecord } from '../../src/contract/vm-record.js';
import type { VmExit, VmObservation } from '../../src/hypervisor/hypervisor.js';
import type { StoredVm } from '../../src/store/vm-repository.js';

const UUID = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
const limits = { crashLimit: 3, crashWindowSeconds: 600, stopTimeoutMs: 60_000, backoffMinMs: 500, backoffMaxMs: 30_000 };
const up: VmObservation = { state: 'running', handle: { uuid: UUID, name: 'web-1', pid: 42, startTime: 1, startedAt: '', qmpSocket: '/q', serialLog: '/s' } };
const down: VmObservation = { state: 'absent' };

function stored(fields: Record<string, unknown>): StoredVm {
  const text = JSON.stringify({ uuid: UUID, name: 'web-1', host: 'hv1', spec: { memory: 64, disks: [{ path: '/d/a.qcow2' }] }, ...fields });
  return { uuid: UUID, key: `/v1/vm/${UUID}`, raw: text, modRevision: '7', parsed: parseVmRecord(text, UUID) };
}

function plan(fields: Record<string, unknown>, observed: VmObservation, more: { exit?: VmExit; refresh?: boolean } = {}): Step {
  return planVm({ host: 'hv1', vm: stored(fields), observed, exit: more.exit ?? null, recentExits: 0, limits, snapshotRefreshDue: more.refresh ?? false });
}

function brief(step: Step): string {
  switch (step.kind) {
    case 'snapshot':
      return `snapshot ${step.phase} ${step.op} ${step.name}`;
    case 'write':
      return `write ${step.patch.status}${step.patch.snapshot_request?.state ? ` request ${step.patch.snapshot_request.state}` : ''}${step.event ? ` +${step.event.event}` : ''}`;
    case 'stop':
      return `stop${step.force ? ' force' : ''} ${step.timeoutMs}`;
    case 'start':
      return `start ${step.cause}`;
    default:
      return step.kind;
  }
}

const req = (op: string, name: string, state: string) => ({ snapshot_request: { op, name, state, id: 'r1' } });

describe('planVm: snapshot requests', () => {
  const requested = (op: string, name = 'before') => req(op, name, 'requested');
  const accepted = (op: string, name = 'before') => req(op, name, 'running');
  const table: Array<[string, Record<string, unknown>, VmObservation, string]> = [
    ['a create request on a running VM is checked first', { status: 'RUNNING', ...requested('create') }, up, 'snapshot accept create before'],
    ['a create request on a stopped VM', { status: 'STOP', ...requested('create') }, down, 'snapshot accept create before'],
    ['on a KILLED VM', { status: 'KILLED', ...requested('delete') }, down, 'snapshot accept delete before'],
    ['on an ERROR VM', { status: 'ERROR', ...requested('delete') }, down, 'snapshot accept delete before'],
    ['an accepted create runs (QMP) while the VM runs', { status: 'RUNNING', ...accepted('create') }, up, 'snapshot run create before'],
    ['an accepted delete runs on a stopped VM', { status: 'STOP', ...accepted('delete') }, down, 'snapshot run delete before'],
    ['an accepted rollback stops a running VM first, by force', { status: 'RUNNING', ...accepted('rollback') }, up, 'stop force 0'],
    ['then rolls back once it is down, although the record says RUNNING', { status: 'RUNNING', ...accepted('rollback') }, down, 'snapshot run rollback before'],
    ['an accepted rollback of a stopped VM runs at once', { status: 'STOP', ...accepted('rollback') }, down, 'snapshot run rollback before'],
    ['a request waits while the VM starts', { status: 'REQUESTED_START', ...requested('create') }, down, 'start request'],
    ['… or stops', { status: 'TO_STOP', ...requested('create') }, up, 'write STOPPING'],
    ['… or is STOPPING', { status: 'STOPPING', ...accepted('create') }, up, 'stop 60000'],
    ['a running VM that crashed before its rollback was accepted is restarted first', { status: 'RUNNING', ...requested('rollback') }, down, 'start missing'],
    ['a VM running against a STOP record is stopped before any snapshot', { status: 'STOP', ...requested('create') }, up, 'stop 60000'],
    ['a finished request is left alone', { status: 'RUNNING', ...req('create', 'before', 'done') }, up, 'none'],
    ['a failed one too', { status: 'STOP', ...req('rollback', 'before', 'failed') }, down, 'none'],
    ['a hostile name fails the request, the VM untouched', { status: 'RUNNING', ...requested('create', '../../etc; rm -rf /') }, up, 'write RUNNING request failed +vm.snapshot_failed'],
    ['an all-digit name fails (qemu would read it as an id)', { status: 'STOP', ...requested('rollback', '2') }, down, 'write STOP request failed +vm.snapshot_failed'],
    ['an unknown op fails', { status: 'RUNNING', ...requested('revert') }, up, 'write RUNNING request failed +vm.snapshot_failed'],
  ];
  for (const [title, fields, observed, expected] of table) {
    it(`${title} → ${expected}`, () => assert.equal(brief(plan(fields, observed)), expected));
  }

  it('says why a bad request failed, in one sentence', () => {
    const step = plan({ status: 'RUNNING', ...requested('create', 'a b') }, up);
    assert.equal(step.kind, 'write');
    if (step.kind !== 'write') return;
    assert.equal(step.patch.snapshot_request?.error, 'Snapshot name "a b" is invalid: use 1 to 64 letters, digits and "-_.:", starting with a letter or digit.');
    assert.match(step.event?.message ?? '', /^VM web-1: snapshot create a b failed: /);
  });

  it('refreshes the snapshots only at rest, and a request comes first', () => {
    assert.equal(brief(plan({ status: 'RUNNING' }, up, { refresh: true })), 'refresh-snapshots');
    assert.equal(brief(plan({ status: 'STOP' }, down, { refresh: true })), 'refresh-snapshots');
    assert.equal(brief(plan({ status: 'RUNNING' }, up)), 'none');
    assert.equal(brief(plan({ status: 'STARTING' }, down, { refresh: true })), 'start request');
    assert.equal(brief(plan({ status: 'TO_STOP' }, up, { refresh: true })), 'write STOPPING');
    assert.equal(brief(plan({ status: 'RUNNING', ...requested('create') }, up, { refresh: true })), 'snapshot accept create before');
  });
});

describe('snapshot names', () => {
  const ok = ['a', 'before-upgrade', 'v1.2', '2026-11-22', 'x:y_z', 'A'.repeat(64), '1a'];
  const bad = ['', '7', '2026', '-x', '.hidden', 'a b', 'a/b', 'a,b', 'a'.repeat(65), 'é', 'a\nb', '$(id)'];
  for (const name of ok) it(`accepts ${JSON.stringify(name)}`, () => assert.equal(snapshotNameProblem(name), null));
  for (const name of bad) it(`refuses ${JSON.stringify(name)}`, () => assert.match(snapshotNameProblem(name) ?? '', /^Snapshot name .* (is invalid|is all digits)/));
  it('checks the op too', () => {
    assert.deepEqual(checkSnapshotRequest({ op: 'rollback', name: 'x', state: 'requested' }), { ok: true, op: 'rollback' });
    assert.deepEqual(checkSnapshotRequest({ op: 'drop', name: 'x', state: 'requested' }), { ok: false, error: 'Snapshot operation "drop" is unknown; use create, rollback or delete.' });
  });
});

describe('what the disks hold', () => {
  const disk = (index: number, names: Array<[string, number]>, format: 'qcow2' | 'raw' = 'qcow2'): DiskSnapshots => ({
    index,
    path: `/d/${index}`,
    format,
    snapshots: names.map(([name, t], i) => ({ name, id: String(i + 1), createdMs: t })),
  });

  it('merges the disks: every name, oldest first, flagged when only some disks hold it', () => {
    const merged = mergeDiskSnapshots([disk(0, [['a', 1000], ['b', 3000], ['c', 5000]]), disk(1, [['a', 1001], ['c', 5002]]), disk(2, [], 'raw')]);
    assert.deepEqual(merged, [
      { name: 'a', created_at: '1970-01-01T00:00:01.000Z' },
      { name: 'b', created_at: '1970-01-01T00:00:03.000Z', incomplete: true },
      { name: 'c', created_at: '1970-01-01T00:00:05.000Z' },
    ]);
    assert.deepEqual(mergeDiskSnapshots([]), []);
  });

  it('finds the snapshots newer than a rollback target', () => {
    const d = disk(0, [['b', 3000], ['a', 1000], ['c', 5000]]);
    assert.deepEqual(snapshotsNewerThan(d, 'b').map((s) => s.name), ['c']);
    assert.deepEqual(snapshotsNewerThan(d, 'a').map((s) => s.name), ['b', 'c']);
    assert.deepEqual(snapshotsNewerThan(d, 'c'), []);
    assert.deepEqual(snapshotsNewerThan(d, 'zz'), []);
  });

  const two = [disk(0, [['a', 1]]), disk(1, [['a', 1]])];
  const table: Array<[string, Parameters<typeof acceptProblem>, string | null]> = [
    ['create a new name', ['create', 'b', two, 'web-1'], null],
    ['create a taken name', ['create', 'a', two, 'web-1'], 'VM web-1 already has a snapshot named a.'],
    ['create with a raw disk', ['create', 'b', [...two, disk(2, [], 'raw')], 'web-1'], 'Disk 3 (/d/2) is raw, and only qcow2 disks can hold snapshots.'],
    ['rollback to a snapshot every disk holds', ['rollback', 'a', two, 'web-1'], null],
    ['rollback to an unknown one', ['rollback', 'b', two, 'web-1'], 'VM web-1 has no snapshot named b.'],
    ['rollback when one disk lacks it', ['rollback', 'a', [two[0]!, disk(1, [])], 'web-1'], 'Disk 2 (/d/1) has no snapshot named a, so the disks cannot be rolled back together.'],
    ['rollback with a raw disk', ['rollback', 'a', [disk(0, [], 'raw'), ...two], 'web-1'], 'Disk 1 (/d/0) is raw, and only qcow2 disks can hold snapshots.'],
    ['delete a snapshot some disk holds', ['delete', 'a', [two[0]!, disk(1, [])], 'web-1'], null],
    ['delete beside a raw disk', ['delete', 'a', [two[0]!, disk(1, [], 'raw')], 'web-1'], null],
    ['delete an unknown one', ['delete', 'b', two, 'web-1'], 'VM web-1 has no snapshot named b.'],
  ];
  for (const [title, args, expected] of table) it(title, () => assert.equal(acceptProblem(...args), expected));
});
