/**
 * The read side of the per-host stats summaries, `P/stats/<name>`
 * (src/contract/host-stats.ts, docs/metrics.md). The agent's collector writes
 * them with its own code; `drover scan`, `drover host stats` and the Nagios
 * checks read them here. A summary that fails the schema is still returned,
 * with `stats` null and `error` saying why, so one bad value never hides the
 * others.
 */
import { hostStatsSchema, type HostStats } from '../contract/host-stats.js';
import type { KeySpace } from '../contract/keys.js';
import type { KvEntry, KvStore } from './kv-store.js';
import { rawObject } from './vm-repository.js';

/**
 * A summary older than this many of its own intervals is stale: the agent
 * writes one per interval, so three missed writes in a row mean its collector
 * (or the agent, or its etcd connection) has stopped, not a slow write.
 */
export const STALE_INTERVALS = 3;

export interface StoredHostStats {
  name: string;
  /** The parsed summary, or null when the value does not match the schema. */
  stats: HostStats | null;
  /** Why `stats` is null. */
  error: string | null;
}

function toStoredStats(name: string, entry: KvEntry): StoredHostStats {
  const obj = rawObject(entry.raw);
  if (!obj) return { name, stats: null, error: `The stats summary of host ${name} is not a JSON object.` };
  const parsed = hostStatsSchema.safeParse(obj);
  if (parsed.success) return { name, stats: parsed.data, error: null };
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
  return { name, stats: null, error: `The stats summary of host ${name} is invalid${where}: ${issue?.message ?? 'schema mismatch'}.` };
}

/** Seconds since the summary was taken (never negative: clocks of hosts differ a little). */
export function summaryAgeSeconds(stats: HostStats, now: Date = new Date()): number {
  const at = Date.parse(stats.at);
  return Number.isNaN(at) ? Infinity : Math.max(0, (now.getTime() - at) / 1000);
}

export function isStale(stats: HostStats, now: Date = new Date()): boolean {
  return summaryAgeSeconds(stats, now) > STALE_INTERVALS * stats.interval;
}

export class StatsRepository {
  constructor(
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
  ) {}

  /** Every host's summary, sorted by host name. */
  async list(): Promise<StoredHostStats[]> {
    const { entries } = await this.kv.list(this.keys.statsPrefix);
    return entries.map((e) => toStoredStats(this.keys.idOf(e.key, this.keys.statsPrefix), e));
  }

  async get(name: string): Promise<StoredHostStats | null> {
    const entry = await this.kv.get(this.keys.stats(name));
    return entry ? toStoredStats(name, entry) : null;
  }
}
