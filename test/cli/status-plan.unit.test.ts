import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyPlan, planStatusChange, type StatusPlan, type VmAction } from '../../src/vm-ops/status-plan.js';

type Row = [VmAction, string, boolean, StatusPlan['kind'], string?];

// action, current status, -F, expected kind, expected status written
const TABLE: Row[] = [
  ['start', 'STOP', false, 'write', 'REQUESTED_START'],
  ['start', 'KILLED', false, 'write', 'REQUESTED_START'],
  ['start', 'ERROR', false, 'write', 'REQUESTED_START'],
  ['start', 'TO_STOP', false, 'write', 'REQUESTED_START'],
  ['start', 'RUNNING', false, 'noop'],
  ['start', 'REQUESTED_NEW', false, 'noop'],
  ['start', 'SCHEDULED', false, 'noop'],
  ['start', 'REQUESTED_DELETE', false, 'refuse'],
  ['stop', 'RUNNING', false, 'write', 'TO_STOP'],
  ['stop', 'STOP', false, 'noop'],
  ['stop', 'STOP', true, 'noop'],
  ['stop', 'TO_STOP', false, 'noop'],
  ['stop', 'STOPPING', true, 'write', 'TO_STOP'],
  ['stop', 'REQUESTED_DELETE', true, 'refuse'],
  ['restart', 'RUNNING', false, 'write', 'REQUESTED_RESTART'],
  ['restart', 'STOP', false, 'write', 'REQUESTED_RESTART'],
  ['restart', 'REQUESTED_RESTART', false, 'noop'],
  ['delete', 'RUNNING', false, 'write', 'REQUESTED_DELETE'],
  ['delete', 'ERROR', false, 'write', 'REQUESTED_DELETE'],
  ['delete', 'REQUESTED_DELETE', false, 'noop'],
];

describe('planStatusChange (unit)', () => {
  for (const [action, status, force, kind, written] of TABLE) {
    it(`${action}${force ? ' -F' : ''} on ${status} -> ${kind}${written ? ` ${written}` : ''}`, () => {
      const plan = planStatusChange(action, { status }, { force });
      assert.equal(plan.kind, kind);
      if (plan.kind === 'write') assert.equal(plan.status, written);
    });
  }

  it('stop -F on a VM already stopping with force_stop is a no-op', () => {
    assert.equal(planStatusChange('stop', { status: 'TO_STOP', force_stop: true }, { force: true }).kind, 'noop');
  });

  it('only a no-op already at the goal is done', () => {
    assert.deepEqual(planStatusChange('stop', { status: 'STOP' }), { kind: 'noop', reason: 'is already stopped', done: true });
    assert.equal((planStatusChange('stop', { status: 'STOPPING' }) as { done: boolean }).done, false);
  });

  it('applyPlan keeps every other field and sets or clears force_stop', () => {
    const rec = { uuid: 'u', status: 'RUNNING', x: { y: 1 }, force_stop: true };
    assert.deepEqual(applyPlan(rec, { status: 'TO_STOP', forceStop: false }), { uuid: 'u', status: 'TO_STOP', x: { y: 1 } });
    assert.deepEqual(applyPlan({ uuid: 'u' }, { status: 'TO_STOP', forceStop: true }), { uuid: 'u', status: 'TO_STOP', force_stop: true });
    assert.deepEqual(applyPlan(rec, { status: 'REQUESTED_START', forceStop: false }), { ...rec, status: 'REQUESTED_START' });
  });
});
