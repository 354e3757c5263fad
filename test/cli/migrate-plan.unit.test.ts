import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyMigration, describeMigration, planMigration, targetProblem } from '../../src/vm-ops/migrate-vm.js';
import type { StoredHost } from '../../src/store/host-repository.js';

describe('vm migrate: the plan from the record', () => {
  const table: Array<[Record<string, unknown>, string]> = [
    [{ status: 'RUNNING', host: 'hv1' }, 'live'],
    [{ status: 'STOP', host: 'hv1' }, 'cold'],
    [{ status: 'KILLED', host: 'hv1' }, 'cold'],
    [{ status: 'ERROR', host: 'hv1' }, 'cold'],
    [{ status: 'RUNNING', host: 'hv2' }, 'noop: is already on hv2'],
    [{ status: 'REQUESTED_NEW', host: '' }, 'refuse: has no host yet (the scheduler places it)'],
    [{ status: 'MIGRATING', host: 'hv1', migration: { target: 'hv3' } }, 'refuse: is already migrating to hv3'],
    [{ status: 'STARTING', host: 'hv1' }, 'refuse: is STARTING; only a RUNNING VM (live) or a stopped one (cold) can move'],
  ];
  for (const [record, expected] of table) {
    it(`${JSON.stringify(record)} → ${expected}`, () => {
      const plan = planMigration(record, 'hv2');
      assert.equal('reason' in plan ? `${plan.kind}: ${plan.reason}` : plan.kind, expected);
    });
  }

  it('a live move asks the agents; a cold one changes only the host; other fields stay', () => {
    const now = new Date('2026-11-23T10:00:00Z');
    const live = applyMigration({ status: 'RUNNING', host: 'hv1', x: 1 }, { kind: 'live' }, 'hv2', now);
    assert.deepEqual(live, { status: 'REQUESTED_MIGRATE', host: 'hv1', x: 1, migration: { target: 'hv2', requested_at: '2026-11-23T10:00:00.000Z' } });
    const cold = applyMigration({ status: 'STOP', host: 'hv1', runtime: { pid: 1 }, x: 1 }, { kind: 'cold' }, 'hv2', now);
    assert.deepEqual(cold, { status: 'STOP', host: 'hv2', x: 1 });
  });

  it('checks the target host', () => {
    const host = (status: 'ALIVE' | 'DEAD', record: Record<string, unknown>): StoredHost => ({ name: 'hv2', raw: '', record, parsed: null, aliveKey: status === 'ALIVE', status });
    assert.equal(targetProblem(null, 'hv9', 64), 'No host is named "hv9".');
    assert.match(targetProblem(host('DEAD', {}), 'hv2', 64) ?? '', /is DEAD/);
    assert.match(targetProblem(host('ALIVE', { drained: true }), 'hv2', 64) ?? '', /is drained/);
    assert.match(targetProblem(host('ALIVE', { free_memory: 32 }), 'hv2', 64) ?? '', /has 32 MiB free, less than the VM's 64 MiB/);
    assert.equal(targetProblem(host('ALIVE', { free_memory: 4096 }), 'hv2', 64), null);
  });

  it('describes progress', () => {
    assert.equal(describeMigration({ state: 'sending', target: 'hv2', progress: { transferred: 50 * 1048576, total: 100 * 1048576 } }), 'sending 50% (50 of 100 MiB)');
    assert.equal(describeMigration({ state: 'requested', target: 'hv2', source: 'hv1' }), 'waiting for hv2 to get ready');
    assert.equal(describeMigration({ state: 'ready', target: 'hv2' }), 'hv2 is ready');
  });
});
