/**
 * Stats history for charts, from etcd itself: each host's agent rewrites
 * `P/stats/<host>` once per stats interval, and etcd keeps the older
 * versions until it compacts them (the embedded etcd keeps 10,000
 * revisions). Walking the key back through its MVCC revisions gives the
 * recent series with no time-series store of our own. A host's series
 * starts again when its agent's lease does (the key is deleted with the
 * lease), and ends where etcd compacted.
 */
import { hostStatsSchema, type HostStats } from '../contract/host-stats.js';
import { DroverError } from '../lib/errors.js';
import type { KvStore } from '../store/kv-store.js';
import { rawObject } from '../store/vm-repository.js';

export interface StatsSeries<T> {
  points: T[];
  /** True when older points exist but were compacted away or beyond `points`. */
  truncated: boolean;
}

/** The newest `max` summaries of one host, oldest first. */
export async function readStatsSeries(kv: KvStore, key: string, max: number): Promise<StatsSeries<HostStats>> {
  const current = await kv.get(key);
  if (!current) return { points: [], truncated: false };
  const out: HostStats[] = [];
  let entry: typeof current | null = current;
  let truncated = false;
  while (entry) {
    const parsed = hostStatsSchema.safeParse(rawObject(entry.raw));
    if (parsed.success) out.push(parsed.data);
    if (out.length >= max) {
      truncated = BigInt(entry.modRevision) > BigInt(entry.createRevision);
      break;
    }
    if (entry.modRevision === entry.createRevision) break;
    try {
      entry = await kv.getAt(key, (BigInt(entry.modRevision) - 1n).toString());
    } catch (err) {
      if (err instanceof DroverError && err.code === 'NOT_FOUND') {
        truncated = true;
        break;
      }
      throw err;
    }
  }
  return { points: out.reverse(), truncated };
}

/** A host's figures at one interval, without the per-VM list. */
export function hostPoint(s: HostStats): Record<string, unknown> {
  const { vms, ...rest } = s as HostStats & { vms?: unknown[] };
  return { ...rest, vm_count: Array.isArray(vms) ? vms.length : 0 };
}

/** One VM's figures at each interval where its host reported it. */
export function vmPoints(series: readonly HostStats[], uuid: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const s of series) {
    const vm = (s.vms as Array<Record<string, unknown>>).find((v) => v.uuid === uuid);
    if (vm) out.push({ at: s.at, interval: s.interval, ...vm });
  }
  return out;
}
