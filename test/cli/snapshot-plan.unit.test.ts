import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planSnapshotRequest } from '../../src/vm-ops/snapshot-plan.js';
import type { SnapshotOp } from '../../src/contract/snapshot.js';

const now = new Date('2026-11-22T09:00:00Z');
const base = { host: 'hv1', status: 'RUNNING', spec: { memory: 64, disks: [{ path: '/d/a.qcow2' }] }, snapshots: [{ name: 'base' }] };

function plan(op: SnapshotOp, name: string, fields: Record<string, unknown> = {}): string {
  const p = planSnapshotRequest({ ...base, ...fields }, { op, name, id: 'r1', now, label: 'web-1' });
  return p.kind === 'write' ? `write ${JSON.stringify(p.request)}` : `${p.code}: ${p.reason}`;
}

describe('planSnapshotRequest', () => {
  const table: Array<[string, SnapshotOp, string, Record<string, unknown>, string]> = [
    ['a create', 'create', 'next', {}, 'write {"op":"create","name":"next","id":"r1","state":"requested","requested_at":"2026-11-22T09:00:00.000Z"}'],
    ['a rollback to a known snapshot of a stopped VM', 'rollback', 'base', { status: 'STOP' }, 'write {"op":"rollback","name":"base","id":"r1","state":"requested","requested_at":"2026-11-22T09:00:00.000Z"}'],
    ['a VM without a host', 'create', 'next', { host: '' }, "CONFLICT: VM web-1 has no host yet; its snapshots are taken by its host's agent once the scheduler has placed it."],
    ['a VM being deleted', 'create', 'next', { status: 'REQUESTED_DELETE' }, 'CONFLICT: VM web-1 is being deleted.'],
    ['a VM without disks', 'create', 'next', { spec: { memory: 64, boot: { kernel: '/k' } } }, 'CONFLICT: VM web-1 has no disks to snapshot.'],
    ['an RBD disk', 'create', 'next', { spec: { memory: 64, disks: [{ rbd: 'rbd/web' }] } }, 'CONFLICT: Disk 1 of VM web-1 is the RBD image rbd/web; drover snapshots qcow2 files only.'],
    ['a raw disk, create', 'create', 'next', { spec: { memory: 64, disks: [{ path: '/d/a.qcow2' }, { path: '/d/b', format: 'raw' }] } }, 'CONFLICT: VM web-1 cannot be snapshotted: disk 2 (/d/b) is raw, and only qcow2 disks can hold snapshots.'],
    ['a raw disk, delete (allowed: it frees what the qcow2 disks hold)', 'delete', 'base', { spec: { memory: 64, disks: [{ path: '/d/a.qcow2' }, { path: '/d/b', format: 'raw' }] } }, 'write {"op":"delete","name":"base","id":"r1","state":"requested","requested_at":"2026-11-22T09:00:00.000Z"}'],
    ['a request under way', 'create', 'next', { snapshot_request: { op: 'rollback', name: 'base', state: 'running' } }, 'CONFLICT: VM web-1 has a snapshot rollback base under way; wait for it to finish.'],
    ['a request without a state is under way', 'create', 'next', { snapshot_request: { op: 'create', name: 'x' } }, 'CONFLICT: VM web-1 has a snapshot create x under way; wait for it to finish.'],
    ['a finished request does not block', 'create', 'next', { snapshot_request: { op: 'create', name: 'x', state: 'failed' } }, 'write {"op":"create","name":"next","id":"r1","state":"requested","requested_at":"2026-11-22T09:00:00.000Z"}'],
    ['a taken name', 'create', 'base', {}, 'CONFLICT: VM web-1 already has a snapshot named base.'],
    ['an unknown snapshot', 'delete', 'gone', {}, 'NOT_FOUND: VM web-1 has no snapshot named gone; `drover vm snapshot list` shows them.'],
    ['a bad name comes first', 'create', 'a/b', { host: '' }, 'USAGE: Snapshot name "a/b" is invalid: use 1 to 64 letters, digits and "-_.:", starting with a letter or digit.'],
  ];
  for (const [title, op, name, fields, expected] of table) it(title, () => assert.equal(plan(op, name, fields), expected));
});
