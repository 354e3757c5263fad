/**
 * The per-host stats summary, `P/stats/<name>` (docs/metrics.md): what the
 * host's agent measured at its last stats interval, written in one put per
 * interval under the agent's lease (it vanishes with the host). `drover
 * scan`, `drover host stats`, the Nagios checks and the web UI read it.
 *
 * Units are in the field names: `_bytes`, `_seconds`, `_bps` (bytes per
 * second over the last interval). A figure the agent cannot measure for a VM
 * (network counters of user-mode networking, a balloon the VM lacks) is null,
 * never 0.
 */
import { z } from 'zod';

/** At most this many VMs per summary, so the value stays far below etcd's request limit. */
export const MAX_VMS_PER_SUMMARY = 1000;

const count = z.number().int().min(0);
const rate = z.number().min(0);

export const vmStatsSchema = z.looseObject({
  uuid: z.string(),
  name: z.string(),
  pid: z.number().int(),
  vcpus: z.number().int(),
  /** MiB, from the spec. */
  memory: z.number().int(),
  /** ISO time the qemu process started. */
  started_at: z.string(),
  /** ISO time the guest last (re)booted: the process start, or its last reset. */
  booted_at: z.string(),
  /** Seconds since the process started (what accounting calls wall time). */
  wall_seconds: z.number().min(0),
  /** Seconds since the guest last booted. */
  uptime_seconds: z.number().min(0),
  /** User + system CPU of the qemu process since it started (/proc/PID/stat). */
  cpu_seconds: z.number().min(0),
  /** CPU seconds per second over the last interval: 1.0 is one vCPU busy. */
  cpu_load: z.number().min(0),
  rss_bytes: count,
  disk_read_bytes: count,
  disk_write_bytes: count,
  disk_read_ops: count,
  disk_write_ops: count,
  disk_read_bps: rate,
  disk_write_bps: rate,
  net_rx_bytes: count.nullable(),
  net_tx_bytes: count.nullable(),
  net_rx_packets: count.nullable(),
  net_tx_packets: count.nullable(),
  net_rx_bps: rate.nullable(),
  net_tx_bps: rate.nullable(),
  /** The guest's memory as the balloon device reports it; null without a balloon. */
  balloon_bytes: count.nullable(),
});
export type VmStats = z.infer<typeof vmStatsSchema>;

export const hostStatsSchema = z.looseObject({
  host: z.string(),
  /** ISO time the summary was taken. */
  at: z.string(),
  /** The agent's vm_stats_interval in seconds: a summary older than three times this is stale (STALE_INTERVALS in src/store/stats-repository.ts). */
  interval: z.number().positive(),
  /** 1, 5 and 15 minute load averages. */
  load: z.tuple([z.number(), z.number(), z.number()]),
  cpus: z.number().int(),
  memory: z.looseObject({
    total_bytes: count,
    available_bytes: count,
    page_cache_bytes: count,
  }),
  /** The filesystem of the agent's state dir (VM disks, image cache). */
  storage: z.looseObject({
    path: z.string(),
    total_bytes: count,
    free_bytes: count,
    /** False when the state dir cannot be written or its filesystem cannot be read; `error` says why. */
    ok: z.boolean(),
    error: z.string().optional(),
  }),
  vms: z.array(vmStatsSchema).max(MAX_VMS_PER_SUMMARY),
  /** True when the host ran more VMs than MAX_VMS_PER_SUMMARY and the rest were left out. */
  truncated: z.boolean().optional(),
});
export type HostStats = z.infer<typeof hostStatsSchema>;
