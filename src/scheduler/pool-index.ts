/**
 * The leader's picture of the pools: the pool records, and for each pool the
 * VMs that carry its name in their `pool` field, kept up to date by the
 * ClusterView from the same list and watch as everything else, so a pass
 * reads a pool's VMs without scanning every VM.
 *
 * It also remembers the last `runtime.started_at` it saw of each pool VM:
 * the agent removes `runtime` when a VM stops, and the fizzle rule needs to
 * know how long the run that just ended lasted.
 */
import type { KeySpace } from '../contract/keys.js';
import type { KvEntry } from '../store/kv-store.js';
import { toStoredPool, type StoredPool } from '../store/pool-repository.js';
import { rawObject, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import { FINISHED, type PoolMember } from './plan-pool.js';

export class PoolIndex {
  readonly pools = new Map<string, StoredPool>();
  private readonly members = new Map<string, Map<string, PoolMember>>();
  private readonly poolOf = new Map<string, string>();
  private readonly starts = new Map<string, number>();

  constructor(private readonly keys: KeySpace) {}

  putPool(entry: KvEntry): void {
    const pool = toStoredPool(entry, this.keys);
    this.pools.set(pool.name, pool);
  }

  deletePool(key: string): void {
    this.pools.delete(this.keys.idOf(key, this.keys.poolPrefix));
  }

  putVm(vm: StoredVm): void {
    const obj = vm.parsed.ok ? (vm.parsed.value as JsonObject) : rawObject(vm.raw);
    const pool = typeof obj?.pool === 'string' ? obj.pool : undefined;
    const previous = this.poolOf.get(vm.uuid);
    if (previous !== undefined && previous !== pool) this.deleteVm(vm.uuid);
    if (pool === undefined || !obj) return;
    const started = startedAtOf(obj);
    if (started !== undefined) this.starts.set(vm.uuid, started);
    this.poolOf.set(vm.uuid, pool);
    let set = this.members.get(pool);
    if (!set) this.members.set(pool, (set = new Map()));
    set.set(vm.uuid, poolMember(vm.uuid, obj, this.starts.get(vm.uuid)));
  }

  deleteVm(uuid: string): void {
    const pool = this.poolOf.get(uuid);
    if (pool === undefined) return;
    this.poolOf.delete(uuid);
    this.starts.delete(uuid);
    const set = this.members.get(pool);
    set?.delete(uuid);
    if (set?.size === 0) this.members.delete(pool);
  }

  membersOf(pool: string): PoolMember[] {
    return [...(this.members.get(pool)?.values() ?? [])];
  }
}

/**
 * One pool VM as the decision sees it. A finished VM's end is the time of its
 * last log line (the agent appends one with the write that finishes it). Its
 * start is the last `runtime.started_at` seen; when this leader never saw the
 * VM run, the earliest time in its log (no later than the real start, so a
 * guess can only miss a fizzle, never invent one).
 */
export function poolMember(uuid: string, obj: JsonObject, seenStart: number | undefined): PoolMember {
  const status = typeof obj.status === 'string' ? obj.status : '';
  const member: PoolMember = { uuid, name: typeof obj.name === 'string' ? obj.name : uuid, status, host: typeof obj.host === 'string' ? obj.host : '' };
  const times = logTimes(obj.log);
  if (FINISHED.has(status)) {
    member.endedAt = times[times.length - 1];
    member.startedAt = seenStart ?? times[0];
  } else {
    member.startedAt = startedAtOf(obj);
  }
  return member;
}

function startedAtOf(obj: JsonObject): number | undefined {
  const runtime = obj.runtime;
  if (typeof runtime !== 'object' || runtime === null) return undefined;
  const t = Date.parse(String((runtime as JsonObject).started_at));
  return Number.isNaN(t) ? undefined : t;
}

/** The times of `"<ISO time> - <text>"` log lines, in log order. */
function logTimes(log: unknown): number[] {
  if (!Array.isArray(log)) return [];
  const out: number[] = [];
  for (const line of log) {
    if (typeof line !== 'string') continue;
    const t = Date.parse(line.slice(0, line.indexOf(' - ')));
    if (!Number.isNaN(t)) out.push(t);
  }
  return out;
}
