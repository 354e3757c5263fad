import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { failoverStorageError, planVm, restartDelayMs, isDesignatedTo, type PlanInput, type PlanLimits, type Step } from '../../src/agent/plan-vm.js';
import { parseVmRecord } from '../../src/contract/vm-record.js';
import type { StoredVm } from '../../src/store/vm-repository.js';
import type { VmExit, VmObservation } from '../../src/hypervisor/hypervisor.js';

const UUID = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
const limits: PlanLimits = { crashLimit: 3, crashWindowSeconds: 600, stopTimeoutMs: 60_000, backoffMinMs: 500, backoffMaxMs: 30_000 };

function stored(fields: Record<string, unknown>, raw?: string): StoredVm {
  const record = { uuid: UUID, name: 'web-1', host: 'hv1', spec: { memory: 64, boot: { kernel: '/k' } }, ...fields };
  const text = raw ?? JSON.stringify(record);
  return { uuid: UUID, key: `/v1/vm/${UUID}`, raw: text, modRevision: '7', parsed: parseVmRecord(text, UUID) };
}
const up: VmObservation = {
  state: 'running',
  handle: { uuid: UUID, name: 'web-1', pid: 42, startTime: 1, startedAt: '', qmpSocket: '/q', serialLog: '/s' },
};
const down: VmObservation = { state: 'absent' };
const exit = (reason: VmExit['reason']): VmExit => ({ uuid: UUID, reason, detail: 'qemu was killed by SIGKILL.', at: new Date(0) });

function plan(vm: StoredVm | null, observed: VmObservation, more: Partial<PlanInput> = {}): Step {
  return planVm({ host: 'hv1', vm, observed, exit: null, recentExits: 0, limits, ...more });
}
/** A compact form of a step for the tables. */
function brief(step: Step): string {
  switch (step.kind) {
    case 'write':
      return `write ${step.patch.status}${step.event ? ` +${step.event.event}${step.event.email ? '+mail' : ''}` : ''}`;
    case 'start':
      return `start ${step.cause}${step.delayMs ? ` after ${step.delayMs}` : ''}${step.event ? ` +${step.event.event}` : ''}`;
    case 'stop':
      return `stop${step.force ? ' force' : ''} ${step.timeoutMs}`;
    default:
      return step.kind;
  }
}

describe('planVm: requests and states against the observed process', () => {
  const table: Array<[string | undefined, VmObservation, string]> = [
    [undefined, down, 'start request'],
    ['REQUESTED_NEW', down, 'start request'],
    ['SCHEDULED', down, 'start request'],
    ['REQUESTED_START', down, 'start request'],
    ['STARTING', down, 'start request'],
    ['REQUESTED_NEW', up, 'write RUNNING'],
    // A start whose RUNNING write was lost (etcd away, agent killed): its vm.started is due (found by test/chaos/etcd-restarts.chaos.ts).
    ['STARTING', up, 'write RUNNING +vm.started'],
    ['RUNNING', up, 'none'],
    ['TO_STOP', up, 'write STOPPING'],
    ['TO_STOP', down, 'write STOP +vm.stopped'],
    ['STOPPING', up, 'stop 60000'],
    ['STOPPING', down, 'write STOP +vm.stopped'],
    ['STOP', down, 'none'],
    ['STOP', up, 'stop 60000'],
    ['KILLED', down, 'none'],
    ['ERROR', down, 'none'],
    ['ERROR', up, 'none'],
    ['REQUESTED_RESTART', up, 'stop 60000'],
    ['REQUESTED_RESTART', down, 'start restart'],
    ['REQUESTED_DELETE', up, 'stop 60000'],
    ['REQUESTED_DELETE', down, 'destroy'],
  ];
  for (const [status, observed, expected] of table) {
    it(`${status ?? '(no status)'} with the process ${observed.state} → ${expected}`, () => {
      assert.equal(brief(plan(stored(status ? { status } : {}), observed)), expected);
    });
  }

  it('a forced stop and a per-VM stop timeout reach the stop step', () => {
    const vm = stored({ status: 'STOPPING', force_stop: true, spec: { memory: 64, boot: { kernel: '/k' }, stop_timeout: 5 } });
    assert.equal(brief(plan(vm, up)), 'stop force 5000');
  });

  it('ignores records designated to another host or to none', () => {
    assert.equal(brief(plan(stored({ host: 'hv2' }), down)), 'none');
    assert.equal(brief(plan(stored({ host: '' }), down)), 'none');
    assert.equal(brief(plan(null, up)), 'none');
  });
});

describe('planVm: unplanned exits and the restart policy', () => {
  const table: Array<[string, VmExit | null, number, string]> = [
    ['always', exit('crash'), 0, 'start crash after 500 +vm.crashed'],
    ['always', exit('crash'), 1, 'start crash after 1000 +vm.crashed'],
    ['always', exit('crash'), 2, 'write KILLED +vm.killed+mail'],
    ['on-failure', exit('crash'), 0, 'start crash after 500 +vm.crashed'],
    ['never', exit('crash'), 0, 'write KILLED +vm.crashed+mail'],
    ['always', exit('guest-poweroff'), 0, 'start poweroff after 500 +vm.poweroff'],
    ['on-failure', exit('guest-poweroff'), 0, 'write STOP +vm.poweroff'],
    ['never', exit('guest-poweroff'), 0, 'write STOP +vm.poweroff'],
    ['always', exit('requested'), 0, 'write STOP +vm.stopped'],
    ['always', null, 0, 'start missing after 500 +vm.missing'],
    ['never', null, 0, 'write KILLED +vm.missing+mail'],
  ];
  for (const [restart, ex, recent, expected] of table) {
    it(`restart=${restart}, ${ex?.reason ?? 'no exit seen'}, ${recent} recent → ${expected}`, () => {
      const vm = stored({ status: 'RUNNING', spec: { memory: 64, boot: { kernel: '/k' }, restart } });
      assert.equal(brief(plan(vm, down, { exit: ex, recentExits: recent })), expected);
    });
  }

  it('e-mails a crash but not a power-off under restart=always', () => {
    const vm = stored({ status: 'RUNNING' });
    const crash = plan(vm, down, { exit: exit('crash') });
    const poweroff = plan(vm, down, { exit: exit('guest-poweroff') });
    assert.ok(crash.kind === 'start' && crash.event?.email === true);
    assert.ok(poweroff.kind === 'start' && poweroff.event?.email === false);
  });

  it('backs off from min doubling to the cap', () => {
    assert.deepEqual([0, 1, 2, 3, 10].map((n) => restartDelayMs(n, limits)), [500, 1000, 2000, 4000, 30_000]);
  });
});

describe('planVm: invalid records', () => {
  it('marks malformed JSON as ERROR once, with the parser message', () => {
    const vm = stored({}, '{"name": "web-1", ');
    const step = plan(vm, down);
    assert.equal(brief(step), 'write ERROR +vm.error');
    assert.ok(step.kind === 'write' && /not valid JSON/.test(step.patch.error ?? ''));
  });

  it('names the field with the wrong type', () => {
    const step = plan(stored({ spec: { memory: 'lots', boot: { kernel: '/k' } } }), down);
    assert.ok(step.kind === 'write' && step.patch.error?.includes('spec.memory'), JSON.stringify(step));
  });

  it('refuses hostile names and paths', () => {
    const bad = plan(stored({ name: '"; rm -rf /' }), down);
    assert.ok(bad.kind === 'write' && bad.patch.status === 'ERROR' && bad.patch.error?.includes('name'));
    const dots = plan(stored({ spec: { memory: 64, boot: { kernel: '/srv/../etc/shadow' } } }), down);
    assert.ok(dots.kind === 'write' && dots.patch.error?.includes('spec.boot.kernel'));
  });

  it('does not rewrite an invalid record that already says why', () => {
    const first = plan(stored({ spec: { memory: -1, boot: { kernel: '/k' } } }), down);
    assert.ok(first.kind === 'write');
    const again = stored({ status: 'ERROR', error: first.patch.error, spec: { memory: -1, boot: { kernel: '/k' } } });
    assert.equal(brief(plan(again, down)), 'none');
  });

  it('reads the designated host of an invalid record when its JSON has one', () => {
    assert.equal(isDesignatedTo(stored({ host: 'hv1', spec: 3 }), 'hv1'), true);
    assert.equal(isDesignatedTo(stored({ host: 'hv2', spec: 3 }), 'hv1'), false);
    assert.equal(isDesignatedTo(stored({}, 'not json'), 'hv1'), false);
  });
});

describe('failoverStorageError', () => {
  const rec = (spec: Record<string, unknown>) => {
    const r = stored({ spec: { memory: 64, boot: { kernel: '/k' }, ...spec } }).parsed;
    assert.ok(r.ok);
    return r.value;
  };
  it('accepts a failover VM with no disks or disks under a shared path', () => {
    assert.equal(failoverStorageError(rec({ failover: true }), []), null);
    assert.equal(failoverStorageError(rec({ failover: true, disks: [{ path: '/shared/vm/a.raw' }] }), ['/shared']), null);
    assert.equal(failoverStorageError(rec({ disks: [{ path: '/local/a.raw' }] }), []), null, 'no failover: no rule');
  });
  it('refuses local and image disks, naming the disk', () => {
    assert.match(String(failoverStorageError(rec({ failover: true, disks: [{ path: '/sharedx/a.raw' }] }), ['/shared'])), /disk 0 \(\/sharedx\/a.raw\) is not under any shared_storage path/);
    assert.match(String(failoverStorageError(rec({ failover: true, disks: [{ image: 'debian-12' }] }), ['/shared'])), /disk 0 is an image disk/);
  });
});

describe('planVm: live migration (docs/migration.md)', () => {
  const incoming: VmObservation = { state: 'incoming', handle: { ...up.handle, incomingUri: 'tcp:127.0.0.1:4444' } };
  const paused: VmObservation = { state: 'paused', handle: up.handle };
  const shared = ['/shared'];
  const disk = { disks: [{ path: '/shared/web.raw', format: 'raw' }] };
  const rec = (status: string, host: string, migration: Record<string, unknown>, spec: Record<string, unknown> = {}) =>
    stored({ status, host, migration, spec: { memory: 64, boot: { kernel: '/k' }, ...spec } });

  // [case, host running the plan, record, observed, step]
  const table: Array<[string, string, StoredVm, VmObservation, string]> = [
    ['source accepts a request', 'hv1', rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv2' }, disk), up, 'write MIGRATING +vm.migrating'],
    ['source refuses a disk off shared storage', 'hv1', rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv2' }, { disks: [{ path: '/local/x.raw', format: 'raw' }] }), up, 'write RUNNING +vm.migration_failed'],
    ['source refuses an image disk', 'hv1', rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv2' }, { disks: [{ image: 'debian', size: 10 }] }), up, 'write RUNNING +vm.migration_failed'],
    ['source refuses a VM that is not running', 'hv1', rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv2' }), down, 'write RUNNING +vm.migration_failed'],
    ['source refuses itself as the target', 'hv1', rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv1' }), up, 'write RUNNING +vm.migration_failed'],
    ['source drives the migration', 'hv1', rec('MIGRATING', 'hv1', { target: 'hv2', state: 'ready' }), up, 'migrate'],
    ['source resumes a migration paused after completion', 'hv1', rec('MIGRATING', 'hv1', { target: 'hv2', state: 'sending' }), paused, 'migrate'],
    ['source: the VM died during the migration', 'hv1', rec('MIGRATING', 'hv1', { target: 'hv2', state: 'sending' }), down, 'write RUNNING +vm.migration_failed'],
    ['target waits for the source to accept', 'hv2', rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv2' }), down, 'none'],
    ['target prepares', 'hv2', rec('MIGRATING', 'hv1', { target: 'hv2', state: 'requested' }), down, 'incoming'],
    ['target re-announces a qemu it already started', 'hv2', rec('MIGRATING', 'hv1', { target: 'hv2', state: 'requested' }), incoming, 'incoming'],
    ['target waits while the source sends', 'hv2', rec('MIGRATING', 'hv1', { target: 'hv2', state: 'sending' }), incoming, 'none'],
    ['target drops its qemu after a failure', 'hv2', rec('RUNNING', 'hv1', { target: 'hv2', state: 'failed' }), incoming, 'stop force 0'],
    ['target drops a received guest when the VM was failed over elsewhere', 'hv2', rec('SCHEDULED', 'hv3', { target: 'hv2', state: 'sending' }), up, 'stop force 0'],
    ['target after completion, before RESUME', 'hv2', rec('RUNNING', 'hv2', { target: 'hv2', source: 'hv1', state: 'completed' }), incoming, 'none'],
    ['target after completion', 'hv2', rec('RUNNING', 'hv2', { target: 'hv2', source: 'hv1', state: 'completed' }), up, 'none'],
    ['a waiting qemu is not taken for a started VM', 'hv2', rec('SCHEDULED', 'hv2', { target: 'hv2', state: 'ready' }), incoming, 'stop force 0'],
    ['old source stops its paused leftover', 'hv1', rec('RUNNING', 'hv2', { target: 'hv2', source: 'hv1', state: 'completed' }), paused, 'stop force 0'],
    ['old source has nothing left', 'hv1', rec('RUNNING', 'hv2', { target: 'hv2', source: 'hv1', state: 'completed' }), down, 'none'],
    ['a bystander does nothing', 'hv3', rec('MIGRATING', 'hv1', { target: 'hv2', state: 'requested' }), down, 'none'],
  ];
  for (const [name, host, vm, observed, expected] of table) {
    it(name, () => assert.equal(brief(plan(vm, observed, { host, sharedStorage: shared })), expected));
  }

  it('says why a refused migration failed, in the migration field', () => {
    const step = plan(rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv2' }, { disks: [{ path: '/local/x.raw', format: 'raw' }] }), up, { sharedStorage: shared });
    assert.equal(step.kind, 'write');
    if (step.kind !== 'write') return;
    assert.equal(step.patch.migration?.state, 'failed');
    assert.match(step.patch.migration?.error ?? '', /disk 0 \(\/local\/x\.raw\) is not under any shared_storage path/);
  });

  it('marks the source in an accepted migration', () => {
    const step = plan(rec('REQUESTED_MIGRATE', 'hv1', { target: 'hv2' }), up);
    assert.deepEqual(step.kind === 'write' ? step.patch.migration : null, { source: 'hv1', state: 'requested' });
  });
});
