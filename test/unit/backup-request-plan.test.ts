/** What a backup or restore request writes, and what it refuses (src/vm-ops/backup-request.ts), with no I/O; and the start it holds back. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planBackupRequest, type BackupAsk } from '../../src/vm-ops/backup-request.js';
import { planStatusChange } from '../../src/vm-ops/status-plan.js';

const now = new Date('2026-12-06T10:00:00.000Z');
const record = (extra: Record<string, unknown> = {}) => ({ uuid: 'u', name: 'web', host: 'hv1', status: 'STOP', spec: { disks: [{ path: '/srv/web.qcow2' }] }, ...extra });
const plan = (rec: Record<string, unknown>, ask: BackupAsk) => planBackupRequest(rec, { ...ask, id: 'abc', now, label: 'web' });

describe('planBackupRequest', () => {
  it('writes a backup of a stopped or running VM, and a restore of a stopped one', () => {
    assert.deepEqual(plan(record(), { op: 'backup', name: 'nightly', requestor: 'alice' }), {
      kind: 'write',
      request: { op: 'backup', id: 'abc', state: 'requested', requested_at: now.toISOString(), requestor: 'alice', name: 'nightly' },
    });
    assert.equal(plan(record({ status: 'RUNNING' }), { op: 'backup' }).kind, 'write');
    const restore = plan(record({ status: 'KILLED' }), { op: 'restore', name: '20261206T100000Z-0a0b0c' });
    assert.deepEqual(restore.kind === 'write' && [restore.request.op, restore.request.backup, restore.request.name], ['restore', '20261206T100000Z-0a0b0c', undefined]);
    // A finished request is history, not a lock.
    assert.equal(plan(record({ backup_request: { op: 'backup', id: 'x', state: 'failed' } }), { op: 'backup' }).kind, 'write');
  });

  const refusals: Array<[string, Record<string, unknown>, BackupAsk, RegExp]> = [
    ['a bad name', record(), { op: 'backup', name: '../x' }, /^Backup name "\.\.\/x" is invalid/],
    ['a VM being deleted', record({ status: 'REQUESTED_DELETE' }), { op: 'backup' }, /is being deleted/],
    ['a VM with no host', record({ host: '' }), { op: 'backup' }, /has no host yet/],
    ['a VM without disks', record({ spec: {} }), { op: 'backup' }, /has no disks/],
    ['an RBD disk', record({ spec: { disks: [{ rbd: 'rbd/web' }] } }), { op: 'backup' }, /RBD image; back it up with Ceph's own tools/],
    ['a request under way', record({ backup_request: { op: 'restore', id: 'x', state: 'running', requested_at: 'T' } }), { op: 'backup' }, /has a restore under way since T; wait/],
    ['a request with no state yet', record({ backup_request: { op: 'backup', id: 'x' } }), { op: 'backup' }, /has a backup under way/],
    ['a restore of a running VM', record({ status: 'RUNNING' }), { op: 'restore', name: 'n' }, /is RUNNING; stop it first/],
    ['a backup of a starting VM', record({ status: 'STARTING' }), { op: 'backup' }, /is STARTING; a backup reads the disks of a RUNNING or stopped VM/],
  ];
  for (const [what, rec, ask, sentence] of refusals) {
    it(`refuses ${what}`, () => {
      const p = plan(rec, ask);
      assert.equal(p.kind, 'refuse');
      assert.match(p.kind === 'refuse' ? p.reason : '', sentence);
    });
  }
});

describe('a start while a backup or restore is under way', () => {
  const busy = { op: 'restore', id: 'x', state: 'running', requested_at: 'T' };
  it('is refused for a stopped VM, start or restart', () => {
    for (const action of ['start', 'restart'] as const) {
      assert.deepEqual(planStatusChange(action, { status: 'STOP', backup_request: busy }), { kind: 'refuse', reason: 'has a restore under way since T; wait for it to finish' });
    }
  });
  it('is not held back by a finished request, and a running VM may still stop or restart', () => {
    assert.equal(planStatusChange('start', { status: 'STOP', backup_request: { ...busy, state: 'done' } }).kind, 'write');
    assert.equal(planStatusChange('stop', { status: 'RUNNING', backup_request: { ...busy, op: 'backup' } }).kind, 'write');
    assert.equal(planStatusChange('restart', { status: 'RUNNING', backup_request: { ...busy, op: 'backup' } }).kind, 'write');
  });
});
