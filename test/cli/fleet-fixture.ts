/**
 * Host records, alive keys and stats summaries (`P/stats/<host>`) written straight into
 * etcd, as the agent's collector and registration would write them: the
 * commands that read them are the subject, not the agent. Every summary is
 * checked against the contract's schema before it is written.
 */
import { hostStatsSchema, type HostStats, type VmStats } from '../../src/contract/host-stats.js';
import type { Cluster } from './helpers.js';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

export function vmStats(uuid: string, name: string, extra: Partial<VmStats> = {}): VmStats {
  return {
    uuid,
    name,
    pid: 4242,
    vcpus: 1,
    memory: 256,
    started_at: '2026-11-23T06:00:00.000Z',
    booted_at: '2026-11-23T06:00:00.000Z',
    wall_seconds: 3 * 3600 + 12 * 60 + 5,
    uptime_seconds: 3 * 3600 + 12 * 60 + 5,
    cpu_seconds: 1234.5,
    cpu_load: 0.98,
    rss_bytes: 180 * MiB,
    disk_read_bytes: 10 * MiB,
    disk_write_bytes: 20 * MiB,
    disk_read_ops: 100,
    disk_write_ops: 200,
    disk_read_bps: 1.2 * MiB,
    disk_write_bps: 512 * 1024,
    net_rx_bytes: null,
    net_tx_bytes: null,
    net_rx_packets: null,
    net_tx_packets: null,
    net_rx_bps: null,
    net_tx_bps: null,
    balloon_bytes: null,
    ...extra,
  } as VmStats;
}

export function hostStats(host: string, vms: VmStats[], extra: Partial<HostStats> = {}): HostStats {
  return {
    host,
    at: new Date().toISOString(),
    // Long, so a summary stays fresh however slowly a loaded machine runs the test; stale ones say 10.
    interval: 600,
    load: [0.52, 0.4, 0.31],
    cpus: 8,
    memory: { total_bytes: 16 * GiB, available_bytes: 12 * GiB, page_cache_bytes: 2 * GiB },
    storage: { path: '/var/lib/drover', total_bytes: 200 * GiB, free_bytes: 120 * GiB, ok: true },
    vms,
    ...extra,
  };
}

export async function putStats(c: Cluster, stats: HostStats): Promise<void> {
  await c.kv.put(c.keys.stats(stats.host), JSON.stringify(hostStatsSchema.parse(stats)));
}

export function hostRecord(name: string, status: 'ALIVE' | 'DEAD', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    hostid: `${name}-id`,
    ip: '10.0.0.1',
    status,
    cpus: 8,
    memory: 16384,
    reserved_memory: 1024,
    free_memory: 12000,
    version: '0.1.0',
    heartbeat_at: '2026-11-22T09:00:00.000Z',
    vms: 2,
    ...extra,
  };
}

/** A host record and, when `alive`, its alive key (without a lease here: the test decides liveness). */
export async function putHost(c: Cluster, record: Record<string, unknown>, alive: boolean): Promise<void> {
  const name = String(record.name);
  await c.kv.put(c.keys.host(name), JSON.stringify(record));
  if (alive) await c.kv.put(c.keys.alive(name), JSON.stringify({ hostid: `${name}-id`, pid: 1, since: '2026-11-22T08:00:00.000Z' }));
}
