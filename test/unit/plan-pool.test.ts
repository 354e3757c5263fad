import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parsePoolRecord, type PoolRecord } from '../../src/contract/pool-record.js';
import { validateVmRecord } from '../../src/contract/vm-record.js';
import type { HostCapacity } from '../../src/scheduler/place-vm.js';
import { planPool, poolTarget, type PoolMember } from '../../src/scheduler/plan-pool.js';
import { poolMember } from '../../src/scheduler/pool-index.js';
import { poolVmRecord } from '../../src/scheduler/pool-vm-record.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const s = (seconds: number) => T0 + seconds * 1000;
const iso = (seconds: number) => new Date(s(seconds)).toISOString();

function pool(fields: Record<string, unknown> = {}): PoolRecord {
  const r = parsePoolRecord(JSON.stringify({ name: 'web', template: { spec: { memory: 1000, boot: { kernel: '/k' } } }, count: 2, fizzle_seconds: 60, backoff_seconds: 300, ...fields }), 'web');
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

const vm = (uuid: string, status: string, fields: Partial<PoolMember> = {}): PoolMember => ({ uuid, name: `web-${uuid}`, status, host: 'hv1', ...fields });
const host = (name: string, fields: Partial<HostCapacity> = {}): HostCapacity => ({
  name, alive: true, drained: false, cpus: 4, memory: 8192, reservedMemory: 512, usedMemory: 0, usedVcpus: 0, vms: 0, ...fields,
});
const policy = { overheadMiB: 64, cpuOvercommit: 4 };

describe('poolTarget', () => {
  it('is the count of a count pool, whatever the hosts', () => {
    assert.equal(poolTarget(pool({ count: 7 }), [], policy), 7);
  });

  const rows: { name: string; share: number; hosts: HostCapacity[]; poolHosts?: string[]; vcpus?: number; want: number }[] = [
    // (8192 − 512) / (1000 + 64) = 7.2 → 7 slots per host.
    { name: 'half of one host, rounded down', share: 0.5, hosts: [host('a')], want: 3 },
    { name: 'all of two hosts', share: 1, hosts: [host('a'), host('b')], want: 14 },
    { name: 'dead and drained hosts count for nothing', share: 1, hosts: [host('a'), host('b', { alive: false }), host('c', { drained: true })], want: 7 },
    { name: 'only the pool\'s hosts count', share: 1, hosts: [host('a'), host('b', { memory: 100_000 })], poolHosts: ['a'], want: 7 },
    { name: 'vCPUs can be the limit (1 cpu × 4 = 4 vCPUs, 2 per VM)', share: 1, hosts: [host('a', { cpus: 1, memory: 100_000 })], vcpus: 2, want: 2 },
    { name: 'memory already used by other VMs does not lower the share', share: 1, hosts: [host('a', { usedMemory: 7000 })], want: 7 },
    { name: 'floating point does not lose a VM (0.29 × 100)', share: 0.29, hosts: [host('a', { memory: 100 * 1064 + 512, cpus: 100 })], want: 29 },
  ];
  for (const r of rows) {
    it(r.name, () => {
      const p = pool({ count: undefined, target_share: r.share, hosts: r.poolHosts, template: { spec: { memory: 1000, vcpus: r.vcpus ?? 1, boot: { kernel: '/k' } } } });
      assert.equal(poolTarget(p, r.hosts, policy), r.want);
    });
  }
});

describe('planPool', () => {
  it('creates what is missing, counting every VM that is not finished or being deleted', () => {
    const plan = planPool(pool({ count: 4 }), [vm('a', 'RUNNING', { startedAt: s(0) }), vm('b', 'REQUESTED_NEW', { host: '' }), vm('c', 'REQUESTED_DELETE')], 4, s(1000));
    assert.equal(plan.create, 2);
    assert.deepEqual(plan.remove, []);
    assert.equal(plan.held, null);
  });

  it('writes the target into the status once, then nothing while nothing changes', () => {
    const p = pool();
    assert.deepEqual(planPool(p, [], 2, s(0)).status, { target: 2 });
    const settled = pool({ status: { target: 2 } });
    const plan = planPool(settled, [vm('a', 'RUNNING', { startedAt: s(0) }), vm('b', 'RUNNING', { startedAt: s(0) })], 2, s(100));
    assert.equal(plan.status, null);
    assert.equal(plan.create, 0);
  });

  it('clears an error the status carried once the record is usable', () => {
    assert.deepEqual(planPool(pool({ status: { target: 2, error: 'bad', other: 1 } }), [], 2, s(0)).status, { target: 2, other: 1 });
  });

  it('replaces a finished VM that ran longer than fizzle_seconds: removes it and creates one', () => {
    const plan = planPool(pool({ status: { target: 2 } }), [vm('a', 'RUNNING', { startedAt: s(0) }), vm('b', 'STOP', { startedAt: s(0), endedAt: s(61) })], 2, s(62));
    assert.deepEqual(plan.remove, ['b']);
    assert.equal(plan.create, 1);
    assert.equal(plan.fizzle, null);
    assert.equal(plan.status, null);
  });

  for (const status of ['STOP', 'KILLED', 'ERROR']) {
    it(`a VM that ends ${status} within fizzle_seconds puts the pool in backoff: no new VM until its end + backoff_seconds`, () => {
      const plan = planPool(pool({ status: { target: 2 } }), [vm('a', 'RUNNING', { startedAt: s(0) }), vm('b', status, { startedAt: s(100), endedAt: s(110) })], 2, s(111));
      assert.deepEqual(plan.remove, ['b']);
      assert.equal(plan.create, 0);
      assert.deepEqual(plan.status, { target: 2, backoff_until: iso(410), last_fizzle: 'VM web-b ran 10 s, less than fizzle_seconds (60).' });
      assert.deepEqual(plan.fizzle, { uuid: 'b', name: 'web-b', ranSeconds: 10, until: iso(410) });
      assert.equal(plan.wakeAt, s(410));
      assert.match(String(plan.held), /^backoff until /);
    });
  }

  it('a VM that never ran counts as a fizzle; fizzle_seconds 0 turns the rule off', () => {
    const never = vm('b', 'ERROR', { endedAt: s(5) });
    assert.equal(planPool(pool(), [never], 1, s(6)).status?.last_fizzle, 'VM web-b ended without having run.');
    const off = planPool(pool({ fizzle_seconds: 0 }), [never, vm('c', 'STOP', { startedAt: s(4), endedAt: s(5) })], 1, s(6));
    assert.equal(off.fizzle, null);
    assert.equal(off.create, 1);
  });

  it('a fizzle older than the recorded backoff changes nothing (the decision is idempotent)', () => {
    const p = pool({ status: { target: 1, backoff_until: iso(410), last_fizzle: 'x' } });
    const plan = planPool(p, [vm('b', 'STOP', { startedAt: s(100), endedAt: s(110) })], 1, s(200));
    assert.equal(plan.status, null);
    assert.equal(plan.fizzle, null);
    assert.deepEqual(plan.remove, ['b']);
    assert.equal(plan.create, 0);
  });

  it('after the backoff, for fizzle_seconds, creates one VM at a time until each passes fizzle_seconds', () => {
    const p = pool({ count: 3, status: { target: 3, backoff_until: iso(410) } });
    // Backoff over, nothing unproven: one probe VM.
    const probe = planPool(p, [], 3, s(411));
    assert.equal(probe.create, 1);
    assert.match(String(probe.held), /one VM at a time/);
    // The probe has not run fizzle_seconds yet: wait for it (or the window's end).
    const waiting = planPool(p, [vm('a', 'RUNNING', { startedAt: s(420) })], 3, s(430));
    assert.equal(waiting.create, 0);
    assert.equal(waiting.wakeAt, s(470));
    // Not started at all yet: wait too, until the window ends.
    assert.equal(planPool(p, [vm('a', 'SCHEDULED')], 3, s(430)).wakeAt, s(470));
    // It passed fizzle_seconds: the next one.
    assert.equal(planPool(p, [vm('a', 'RUNNING', { startedAt: s(405) })], 3, s(466)).create, 1);
    // The window is over: everything missing at once.
    assert.equal(planPool(p, [vm('a', 'RUNNING', { startedAt: s(460) })], 3, s(471)).create, 2);
  });

  it('stops RUNNING VMs whose run reached max_wallclock_seconds and wakes for the next one', () => {
    const p = pool({ count: 3, max_wallclock_seconds: 3600, status: { target: 3 } });
    const plan = planPool(p, [vm('a', 'RUNNING', { startedAt: s(0) }), vm('b', 'RUNNING', { startedAt: s(100) }), vm('c', 'STOPPING', { startedAt: s(0) })], 3, s(3600));
    assert.deepEqual(plan.stop, ['a']);
    assert.equal(plan.create, 0, 'a stopping VM still counts until it has finished');
    assert.equal(plan.wakeAt, s(3700));
  });

  it('over target, removes VMs not placed yet and leaves placed ones to finish', () => {
    const members = [vm('a', 'RUNNING', { startedAt: s(0) }), vm('c', 'REQUESTED_NEW', { host: '' }), vm('b', 'REQUESTED_NEW', { host: '' }), vm('d', 'SCHEDULED')];
    assert.deepEqual(planPool(pool({ count: 1 }), members, 1, s(10)).remove, ['b', 'c']);
    assert.deepEqual(planPool(pool({ count: 0 }), [vm('a', 'RUNNING', { startedAt: s(0) })], 0, s(10)).remove, []);
  });
});

describe('pool records', () => {
  const base = { name: 'web', template: { spec: { memory: 256, boot: { kernel: '/k' } } }, count: 1 };
  const rows: { name: string; record: unknown; key?: string; error?: RegExp }[] = [
    { name: 'a minimal count pool, with Vcycle\'s defaults', record: base },
    { name: 'not JSON', record: '{', error: /^The pool record is not valid JSON/ },
    { name: 'not an object', record: [1], error: /^The pool record must be a JSON object\.$/ },
    { name: 'both count and target_share', record: { ...base, target_share: 0.5 }, error: /^Field target_share is invalid: a pool needs exactly one of "target_share" or "count"\.$/ },
    { name: 'neither', record: { ...base, count: undefined }, error: /exactly one of/ },
    { name: 'a share above 1', record: { ...base, count: undefined, target_share: 1.5 }, error: /^Field target_share is invalid/ },
    { name: 'a template spec that cannot boot', record: { ...base, template: { spec: { memory: 256 } } }, error: /^Field template\.spec is invalid: a VM needs "boot" or at least one disk/ },
    { name: 'a name too long for its VM names', record: { ...base, name: 'a'.repeat(55) }, key: 'a'.repeat(55), error: /is not a pool name/ },
    { name: 'a name that is not the key\'s', record: base, key: 'db', error: /^Field name "web" does not match the key's name db\.$/ },
    { name: 'a wallclock limit within fizzle_seconds', record: { ...base, max_wallclock_seconds: 600 }, error: /^Field max_wallclock_seconds is invalid: must be greater than fizzle_seconds/ },
  ];
  for (const r of rows) {
    it(r.name, () => {
      const parsed = parsePoolRecord(typeof r.record === 'string' ? r.record : JSON.stringify(r.record), r.key ?? 'web');
      if (!r.error) {
        assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
        assert.equal(parsed.value.fizzle_seconds, 600);
        assert.equal(parsed.value.backoff_seconds, 600);
        return;
      }
      assert.equal(parsed.ok, false);
      assert.match(parsed.ok ? '' : parsed.error, r.error);
    });
  }

  it('a pool VM is a valid VM record: template fields kept, pool defaults, no host, spec.nodes from hosts', () => {
    const p = pool({ hosts: ['hv1', 'hv2'], template: { owner: 'ops', x_team: 'batch', host: 'ignored', spec: { memory: 128, boot: { kernel: '/k' } } } });
    const rawTemplate = { owner: 'ops', x_team: 'batch', host: 'ignored', spec: { memory: 128, boot: { kernel: '/k' } } };
    const uuid = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
    const rec = poolVmRecord(p, rawTemplate, uuid, new Date(s(0)));
    assert.deepEqual(rec, {
      owner: 'ops',
      x_team: 'batch',
      uuid,
      name: 'web-2b0c4f7e',
      status: 'REQUESTED_NEW',
      pool: 'web',
      spec: { memory: 128, boot: { kernel: '/k' }, vcpus: 1, vnc: 'unix', restart: 'on-failure', nodes: ['hv1', 'hv2'] },
      log: [`${iso(0)} - created by pool web`],
    });
    assert.ok(validateVmRecord(rec, uuid).ok);
    assert.equal((poolVmRecord(p, { spec: { memory: 128, restart: 'always', nodes: ['hv3'], boot: { kernel: '/k' } } }, uuid, new Date()).spec as { restart: string; nodes: string[] }).nodes[0], 'hv3');
  });

  it('reads a finished VM\'s run from what the agent left: the last start seen, else the earliest log line; the end from the last', () => {
    const finished = { name: 'web-1', status: 'STOP', host: 'hv1', log: [`${iso(0)} - created by pool web`, `${iso(2)} - started on hv1 (pid 9)`, `${iso(9)} - guest powered off`] };
    assert.deepEqual(poolMember('u', finished, s(2)), { uuid: 'u', name: 'web-1', status: 'STOP', host: 'hv1', startedAt: s(2), endedAt: s(9) });
    assert.equal(poolMember('u', finished, undefined).startedAt, s(0));
    const running = { name: 'web-1', status: 'RUNNING', runtime: { started_at: iso(2) }, log: [`${iso(0)} - x`] };
    assert.deepEqual(poolMember('u', running, undefined), { uuid: 'u', name: 'web-1', status: 'RUNNING', host: '', startedAt: s(2) });
  });
});
