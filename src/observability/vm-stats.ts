/**
 * One VM's line of the stats summary (`vmStatsSchema`) from its raw sample
 * and the previous one: rates are the counters' change over the wall time
 * between the two. Pure, so the arithmetic is table-tested.
 */
import type { VmStats } from '../contract/host-stats.js';
import type { VmSample } from '../hypervisor/hypervisor.js';

/** What the agent's record says about a VM, beside what the hypervisor measured. */
export interface VmInfo {
  uuid: string;
  name: string;
  vcpus: number;
  /** MiB, from the spec. */
  memory: number;
}

/**
 * Change per second of a counter; null without a usable previous sample
 * (the first one, or another process: a restart resets qemu's counters).
 * A counter that went down (a device reset) counts as no change.
 */
function perSecond(prev: number | null | undefined, cur: number | null | undefined, seconds: number): number | null {
  if (prev === null || prev === undefined || cur === null || cur === undefined || seconds <= 0) return null;
  return Math.max(0, cur - prev) / seconds;
}

export function vmStatsFrom(info: VmInfo, cur: VmSample, prev: VmSample | null): VmStats {
  const same = prev !== null && prev.pid === cur.pid && prev.startedAt === cur.startedAt ? prev : null;
  const seconds = same ? (cur.at - same.at) / 1000 : 0;
  const wall = Math.max(0, (cur.at - Date.parse(cur.startedAt)) / 1000);
  // Without a previous sample, the load is the average since the process started.
  const cpuLoad = perSecond(same?.cpuSeconds, cur.cpuSeconds, seconds) ?? (wall > 0 ? cur.cpuSeconds / wall : 0);
  const rate = (p: number | null | undefined, c: number | null | undefined): number => perSecond(p, c, seconds) ?? 0;
  const netRate = (p: number | undefined, c: number | undefined): number | null => (cur.net ? rate(p, c) : null);
  return {
    uuid: info.uuid,
    name: info.name,
    pid: cur.pid,
    vcpus: info.vcpus,
    memory: info.memory,
    started_at: cur.startedAt,
    booted_at: cur.bootedAt,
    wall_seconds: wall,
    uptime_seconds: Math.max(0, (cur.at - Date.parse(cur.bootedAt)) / 1000),
    cpu_seconds: cur.cpuSeconds,
    cpu_load: cpuLoad,
    rss_bytes: cur.rssBytes,
    disk_read_bytes: cur.disk?.readBytes ?? 0,
    disk_write_bytes: cur.disk?.writeBytes ?? 0,
    disk_read_ops: cur.disk?.readOps ?? 0,
    disk_write_ops: cur.disk?.writeOps ?? 0,
    disk_read_bps: rate(same?.disk?.readBytes, cur.disk?.readBytes),
    disk_write_bps: rate(same?.disk?.writeBytes, cur.disk?.writeBytes),
    net_rx_bytes: cur.net?.rxBytes ?? null,
    net_tx_bytes: cur.net?.txBytes ?? null,
    net_rx_packets: cur.net?.rxPackets ?? null,
    net_tx_packets: cur.net?.txPackets ?? null,
    net_rx_bps: netRate(same?.net?.rxBytes, cur.net?.rxBytes),
    net_tx_bps: netRate(same?.net?.txBytes, cur.net?.txBytes),
    balloon_bytes: cur.balloonBytes,
  };
}
