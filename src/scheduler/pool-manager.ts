/**
 * The I/O half of pools (docs/pools.md): on every pass of the leading
 * scheduler, for every pool record, asks planPool (pure, plan-pool.ts) what
 * to do and does it: the pool's status first, then stops, removals and
 * creations, in that order.
 *
 * Every write is a transaction guarded by the leader's election key; a VM is
 * created only if its key is absent and the pool record is still at the
 * revision the decision was made on, so neither a deposed leader nor a pool
 * deleted meanwhile gets a VM created. Every write that succeeds goes into
 * the ClusterView at once, so the placement that follows in the same pass
 * places the new VMs and the next pass never counts a VM twice.
 *
 * Time-driven changes (a wallclock limit reached, a backoff over) have no
 * etcd event to wake the scheduler: the manager keeps one timer for the
 * earliest of them and asks for a pass then.
 *
 * A pool record it cannot use (not JSON, or invalid) is never acted on; the
 * reason goes into `status.error` when the record is a JSON object, and into
 * one `pool.error` event per revision either way.
 */
import { randomUUID } from 'node:crypto';
import type { DroverEvent, EventCode, EventLevel } from '../contract/event.js';
import type { KeySpace } from '../contract/keys.js';
import type { PoolRecord } from '../contract/pool-record.js';
import { appendLog } from '../contract/vm-record.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { EventLog } from '../store/event-log.js';
import type { KvEntry, KvOp, KvStore } from '../store/kv-store.js';
import type { StoredPool } from '../store/pool-repository.js';
import { rawObject, type JsonObject } from '../store/vm-repository.js';
import type { ClusterView } from './cluster-view.js';
import type { PlacementPolicy } from './place-vm.js';
import { FINISHED, planPool, poolTarget } from './plan-pool.js';
import { poolVmRecord } from './pool-vm-record.js';

export interface PoolManagerOptions {
  kv: KvStore;
  events: EventLog;
  keys: KeySpace;
  policy: PlacementPolicy;
  logger: Logger;
  /** Asks the scheduler for a pass. */
  wake(): void;
  now?(): number;
}

/** A pass that failed on etcd is tried again this much later. */
const RETRY_MS = 1000;
/** A pass that lost a compare-and-swap looks again this much later. */
const CONFLICT_RETRY_MS = 200;
/** Timers never wait longer than this (a long backoff is re-checked now and then). */
const MAX_SLEEP_MS = 3_600_000;

export class PoolManager {
  private timer: NodeJS.Timeout | null = null;
  /** Pool name → the revision whose error was already reported. */
  private readonly reported = new Map<string, string>();
  /** Pool name → why it last held back creations (logged when it changes, not every pass). */
  private readonly held = new Map<string, string | null>();
  private readonly log: Logger;
  private readonly now: () => number;
  /** A write of this pass lost its compare-and-swap: look again soon. */
  private retry = false;

  constructor(private readonly opts: PoolManagerOptions) {
    this.log = opts.logger.child({ component: 'pools' });
    this.now = opts.now ?? Date.now;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One pass over every pool. Never throws: failures are logged and retried. */
  async reconcile(view: ClusterView, leaderKey: string): Promise<void> {
    let wakeAt = Infinity;
    this.retry = false;
    for (const pool of [...view.pools.pools.values()]) {
      try {
        const next = pool.parsed.ok ? await this.reconcilePool(view, pool, pool.parsed.value, leaderKey) : await this.reportInvalid(view, pool, pool.parsed.error, leaderKey);
        if (next !== null) wakeAt = Math.min(wakeAt, next);
      } catch (err) {
        this.log.warn({ pool: pool.name, err: errorMessage(err) }, 'pool pass failed; will retry');
        wakeAt = Math.min(wakeAt, this.now() + RETRY_MS);
      }
    }
    // Not at once: a lost compare-and-swap whose winner we re-read brings no watch event, but a
    // leader that lost its key without noticing yet must not spin.
    if (this.retry) wakeAt = Math.min(wakeAt, this.now() + CONFLICT_RETRY_MS);
    this.schedule(wakeAt);
  }

  /** Returns when to look at this pool again, or null. */
  private async reconcilePool(view: ClusterView, pool: StoredPool, rec: PoolRecord, leaderKey: string): Promise<number | null> {
    const { kv } = this.opts;
    const now = this.now();
    const target = poolTarget(rec, view.capacities(), this.opts.policy);
    const members = view.pools.membersOf(rec.name);
    const plan = planPool(rec, members, target, now);
    let poolRevision = pool.modRevision;
    if (plan.status) {
      const obj = rawObject(pool.raw) ?? {};
      obj.status = plan.status;
      const written = await this.write(view, leaderKey, pool.key, pool.modRevision, obj);
      if (!written) return null; // changed meanwhile: re-read into the view, and the next pass decides again
      poolRevision = written;
      this.reported.delete(rec.name);
      if (plan.fizzle) {
        const f = plan.fizzle;
        this.log.info({ pool: rec.name, vm: f.uuid, until: f.until }, 'pool backs off');
        await this.event('warn', 'pool.backoff', `Pool ${rec.name} creates no VMs until ${f.until}: ${plan.status.last_fizzle ?? ''}`, f.uuid);
      }
    }
    const byUuid = new Map(members.map((m) => [m.uuid, m]));
    const active = members.filter((m) => !FINISHED.has(m.status) && m.status !== 'REQUESTED_DELETE').length;
    const replacement = plan.create > 0 ? 'a new VM replaces it' : plan.held ? `no new VM yet (${plan.held})` : 'the pool is at its target, so no new VM replaces it';
    for (const uuid of plan.stop) {
      const text = `max_wallclock_seconds (${rec.max_wallclock_seconds}) of pool ${rec.name} reached; stopping`;
      if (await this.updateVm(view, leaderKey, uuid, (obj) => ({ ...withoutForce(obj), status: 'TO_STOP', log: appendLog(logOf(obj), text, new Date(now)) }))) {
        await this.event('info', 'pool.wallclock', `VM ${byUuid.get(uuid)?.name ?? uuid} of pool ${rec.name} ran for max_wallclock_seconds (${rec.max_wallclock_seconds}); stopping it.`, uuid, byUuid.get(uuid)?.host);
      }
    }
    for (const uuid of plan.remove) {
      const m = byUuid.get(uuid);
      const finished = m !== undefined && FINISHED.has(m.status);
      const text = finished ? `finished (${m.status}); deleted by pool ${rec.name}` : `pool ${rec.name} is over its target; deleted before placement`;
      const removed = await this.updateVm(view, leaderKey, uuid, (obj) =>
        // A record no host holds has no agent to delete it: the key goes now.
        typeof obj.host === 'string' && obj.host !== '' ? { ...obj, status: 'REQUESTED_DELETE', log: appendLog(logOf(obj), text, new Date(now)) } : 'delete',
      );
      if (removed && finished) await this.event('info', 'pool.vm_finished', `VM ${m.name} of pool ${rec.name} ended (${m.status}) and is deleted; ${replacement}.`, uuid, m.host);
    }
    const rawTemplate = (rawObject(pool.raw)?.template ?? {}) as JsonObject;
    for (let i = 0; i < plan.create; i++) {
      const uuid = randomUUID();
      const record = poolVmRecord(rec, rawTemplate, uuid, new Date(now));
      const key = this.opts.keys.vm(uuid);
      const raw = JSON.stringify(record);
      const rev = await kv.guardedTxn(leaderKey, [{ key, expected: 'absent' }, { key: pool.key, expected: poolRevision }], [{ put: key, raw }]);
      if (rev === null) {
        this.log.debug({ pool: rec.name }, 'pool changed or leadership lost while creating; deciding again');
        this.retry = true;
        return null;
      }
      view.put(entryOf(key, raw, rev));
      await this.event('info', 'pool.vm_created', `Pool ${rec.name} created VM ${String(record.name)} (${active + i + 1} of target ${target}).`, uuid);
    }
    if (plan.held !== (this.held.get(rec.name) ?? null)) {
      this.held.set(rec.name, plan.held);
      if (plan.held) this.log.info({ pool: rec.name, held: plan.held }, 'pool holds back creations');
    }
    return plan.wakeAt;
  }

  private async reportInvalid(view: ClusterView, pool: StoredPool, error: string, leaderKey: string): Promise<null> {
    if (this.reported.get(pool.name) === pool.modRevision) return null;
    this.reported.set(pool.name, pool.modRevision);
    this.log.warn({ pool: pool.name, error }, 'pool record is invalid; ignoring it');
    await this.event('error', 'pool.error', `Pool record ${pool.name} is invalid, so the scheduler leaves the pool alone: ${error}`);
    const obj = rawObject(pool.raw);
    const status = obj && typeof obj.status === 'object' && obj.status !== null && !Array.isArray(obj.status) ? (obj.status as JsonObject) : {};
    if (!obj || status.error === error) return null;
    const written = await this.write(view, leaderKey, pool.key, pool.modRevision, { ...obj, status: { ...status, error } });
    if (written) this.reported.set(pool.name, written);
    return null;
  }

  /** A guarded compare-and-swap of one key; the new revision, or null (the view is refreshed). */
  private async write(view: ClusterView, leaderKey: string, key: string, expected: string, obj: JsonObject): Promise<string | null> {
    const raw = JSON.stringify(obj);
    return this.commit(view, leaderKey, key, expected, { put: key, raw });
  }

  /** Rewrites (or deletes) one VM record of the view with a guarded compare-and-swap. */
  private async updateVm(view: ClusterView, leaderKey: string, uuid: string, change: (obj: JsonObject) => JsonObject | 'delete'): Promise<boolean> {
    const vm = view.vms.get(uuid);
    const obj = vm ? rawObject(vm.raw) : null;
    if (!vm || !obj) return false;
    const next = change(obj);
    const op: KvOp = next === 'delete' ? { delete: vm.key } : { put: vm.key, raw: JSON.stringify(next) };
    return (await this.commit(view, leaderKey, vm.key, vm.modRevision, op)) !== null;
  }

  private async commit(view: ClusterView, leaderKey: string, key: string, expected: string, op: KvOp): Promise<string | null> {
    const rev = await this.opts.kv.guardedTxn(leaderKey, [{ key, expected }], [op]);
    if (rev === null) {
      // Someone else wrote it, or leadership is gone: re-read and let the next pass decide.
      const fresh = await this.opts.kv.get(key);
      if (fresh) view.put(fresh);
      this.retry = true;
      return null;
    }
    if ('put' in op) view.put(entryOf(key, op.raw, rev));
    else view.delete(key, rev);
    return rev;
  }

  private async event(level: EventLevel, event: EventCode, message: string, vm?: string, host = ''): Promise<void> {
    const e: DroverEvent = { ts: new Date(this.now()).toISOString(), host, level, event, message };
    if (vm) e.vm = vm;
    await this.opts.events.append(e).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'could not write a pool event'));
  }

  private schedule(at: number): void {
    this.stop();
    if (!Number.isFinite(at)) return;
    // A little late rather than early: the decision compares with the clock.
    const delay = Math.min(MAX_SLEEP_MS, Math.max(0, at - this.now()) + 20);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.opts.wake();
    }, delay);
    this.timer.unref();
  }
}

function entryOf(key: string, raw: string, revision: string): KvEntry {
  return { key, raw, modRevision: revision, createRevision: revision, lease: '0' };
}

function logOf(obj: JsonObject): string[] {
  return Array.isArray(obj.log) ? obj.log.filter((l): l is string => typeof l === 'string') : [];
}

function withoutForce(obj: JsonObject): JsonObject {
  const { force_stop: _force, ...rest } = obj;
  return rest;
}
