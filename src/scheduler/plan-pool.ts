/**
 * The pool decision (docs/pools.md): a pure function from one pool record,
 * the VMs it created and the time to what the scheduler writes next.
 * Table-tested in test/unit/plan-pool.test.ts.
 *
 * Theory of operation (Vcycle's machinetype rules, on drover's records):
 *  - A VM is *finished* when its status is STOP, KILLED or ERROR. It is
 *    removed (REQUESTED_DELETE, so its agent cleans up) and, unless the pool
 *    is over its target, replaced by a new one.
 *  - A finished VM whose last run lasted less than `fizzle_seconds` (or that
 *    never ran) *fizzled*: the pool is in backoff until its end plus
 *    `backoff_seconds` and creates nothing meanwhile.
 *  - When the backoff is over, for `fizzle_seconds` more the pool creates one
 *    VM at a time: a new one only once every VM it has not yet seen pass
 *    `fizzle_seconds` has done so (Vcycle's `notPassedFizzle` probe), so a
 *    pool with no work left does not start a whole batch to find out.
 *  - A RUNNING VM whose current run is `max_wallclock_seconds` old is stopped
 *    (TO_STOP); it then finishes and is replaced.
 *  - Over target (the count was lowered, hosts left): VMs not placed yet are
 *    removed; placed ones are left to finish, never killed for the share.
 *
 * The status fields are written before anything else, so a fizzle is
 * recorded before the VM that shows it is deleted.
 */
import type { PoolRecord, PoolStatus } from '../contract/pool-record.js';
import type { HostCapacity, PlacementPolicy } from './place-vm.js';

/** What the decision needs to know of one VM of the pool. */
export interface PoolMember {
  uuid: string;
  name: string;
  /** '' when the record has none. */
  status: string;
  /** '' when not placed. */
  host: string;
  /** When its current (last) run started, ms since the epoch; undefined when it never ran. */
  startedAt?: number;
  /** When it finished (STOP, KILLED, ERROR), ms since the epoch; the time of the plan when unknown. */
  endedAt?: number;
}

export interface PoolPlan {
  /** The status to write first; null when it would not change. */
  status: PoolStatus | null;
  /** VMs to remove: the finished ones, and unplaced ones over target. */
  remove: string[];
  /** RUNNING VMs past max_wallclock_seconds, to stop. */
  stop: string[];
  /** How many VMs to create. */
  create: number;
  /** The fizzle that started a new backoff, for the event. */
  fizzle: { uuid: string; name: string; ranSeconds: number | null; until: string } | null;
  /** Why fewer VMs are created than are missing, or null. */
  held: string | null;
  /** When to decide again even if no record changes (ms), or null. */
  wakeAt: number | null;
}

/** Statuses of a pool VM that is over: remove it, maybe replace it. */
export const FINISHED = new Set(['STOP', 'KILLED', 'ERROR']);

/**
 * How many VMs the pool should have: its `count`, or its `target_share` of
 * the template-sized slots on its hosts that are alive and not drained (per
 * host the fewer of memory − reserved_memory over memory + overhead, and
 * cpus × overcommit over vCPUs), rounded down.
 */
export function poolTarget(pool: PoolRecord, hosts: readonly HostCapacity[], policy: Pick<PlacementPolicy, 'overheadMiB' | 'cpuOvercommit'>): number {
  if (pool.count !== undefined) return pool.count;
  const names = pool.hosts ?? pool.template.spec.nodes;
  const allowed = names && names.length > 0 ? new Set(names) : null;
  const perVm = pool.template.spec.memory + policy.overheadMiB;
  let slots = 0;
  for (const h of hosts) {
    if (!h.alive || h.drained || (allowed && !allowed.has(h.name))) continue;
    const byMemory = Math.floor(Math.max(0, h.memory - h.reservedMemory) / perVm);
    const byCpu = Math.floor((h.cpus * policy.cpuOvercommit) / pool.template.spec.vcpus);
    slots += Math.min(byMemory, byCpu);
  }
  // 0.29 × 100 is 28.999999999999996 in floating point: forgive that much.
  return Math.floor((pool.target_share ?? 0) * slots + 1e-9);
}

export function planPool(pool: PoolRecord, members: readonly PoolMember[], target: number, now: number): PoolPlan {
  const fizzleMs = pool.fizzle_seconds * 1000;
  const finished = members.filter((m) => FINISHED.has(m.status));
  const active = members.filter((m) => !FINISHED.has(m.status) && m.status !== 'REQUESTED_DELETE');
  const wake: number[] = [];

  // Fizzles: the newest end of a short run sets the backoff (Vcycle's lastAbortTime).
  const current = pool.status?.backoff_until !== undefined ? Date.parse(pool.status.backoff_until) : NaN;
  let backoffUntil = Number.isNaN(current) ? 0 : current;
  let fizzle: PoolPlan['fizzle'] = null;
  for (const m of finished) {
    const ended = m.endedAt ?? now;
    const ran = m.startedAt === undefined ? 0 : Math.max(0, ended - m.startedAt);
    if (ran >= fizzleMs) continue;
    const until = ended + pool.backoff_seconds * 1000;
    if (until > backoffUntil) {
      backoffUntil = until;
      const ranSeconds = m.startedAt === undefined ? null : Math.round(ran / 100) / 10;
      fizzle = { uuid: m.uuid, name: m.name, ranSeconds, until: new Date(until).toISOString() };
    }
  }

  const status: PoolStatus = { ...(pool.status ?? {}), target };
  delete status.error;
  if (fizzle) {
    status.backoff_until = fizzle.until;
    status.last_fizzle =
      fizzle.ranSeconds === null
        ? `VM ${fizzle.name} ended without having run.`
        : `VM ${fizzle.name} ran ${fizzle.ranSeconds} s, less than fizzle_seconds (${pool.fizzle_seconds}).`;
  }

  // Wallclock: runs that reached max_wallclock_seconds.
  const stop: string[] = [];
  if (pool.max_wallclock_seconds !== undefined) {
    const limitMs = pool.max_wallclock_seconds * 1000;
    for (const a of active) {
      if (a.status !== 'RUNNING' || a.startedAt === undefined) continue;
      const due = a.startedAt + limitMs;
      if (due <= now) stop.push(a.uuid);
      else wake.push(due);
    }
  }

  const remove = finished.map((f) => f.uuid);
  let create = 0;
  let held: string | null = null;
  const missing = target - active.length;
  if (missing < 0) {
    const unplaced = active.filter((a) => a.host === '' && (a.status === 'REQUESTED_NEW' || a.status === '')).sort((a, b) => (a.uuid < b.uuid ? -1 : 1));
    remove.push(...unplaced.slice(0, -missing).map((a) => a.uuid));
  } else if (missing > 0) {
    const probeEnd = backoffUntil + fizzleMs;
    const unproven = active.filter((a) => a.startedAt === undefined || now - a.startedAt < fizzleMs);
    if (now < backoffUntil) {
      held = `backoff until ${new Date(backoffUntil).toISOString()}`;
      wake.push(backoffUntil);
    } else if (now < probeEnd && unproven.length > 0) {
      held = `within fizzle_seconds of the backoff: waiting for ${unproven.length} new VM(s) to pass fizzle_seconds`;
      wake.push(probeEnd, ...unproven.filter((a) => a.startedAt !== undefined).map((a) => (a.startedAt as number) + fizzleMs));
    } else if (now < probeEnd) {
      create = 1;
      if (missing > 1) held = 'within fizzle_seconds of the backoff: one VM at a time';
    } else {
      create = missing;
    }
  }

  const future = wake.filter((t) => t > now);
  return {
    status: sameStatus(pool.status, status) ? null : status,
    remove,
    stop,
    create,
    fizzle,
    held,
    wakeAt: future.length > 0 ? Math.min(...future) : null,
  };
}

function sameStatus(a: PoolStatus | undefined, b: PoolStatus): boolean {
  const keys = new Set([...Object.keys(a ?? {}), ...Object.keys(b)]);
  for (const k of keys) if (JSON.stringify((a ?? {})[k]) !== JSON.stringify(b[k])) return false;
  return true;
}
