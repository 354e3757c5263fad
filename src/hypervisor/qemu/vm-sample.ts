/**
 * The raw counters of one qemu VM (Hypervisor.sample, docs/metrics.md), read
 * without spawning anything: /proc for the process, the VM's one existing QMP
 * connection for block stats and the balloon, sysfs for its tap devices.
 */
import { readFile } from 'node:fs/promises';
import type { VmDiskCounters, VmNetCounters } from '../hypervisor.js';
import type { QmpClient } from './qmp-client.js';
import type { QmpBlockStats } from './qmp-types.js';

/** True when a qemu argv adds a balloon device (drover's own argv never does; a hand-made one may). */
export function argvHasBalloon(argv: readonly string[]): boolean {
  return argv.some((a) => /(^|,)(driver=)?virtio-balloon/.test(a));
}

/** Sums query-blockstats over every block backend (each disk once: its device, not its nodes). */
export function sumBlockStats(stats: readonly QmpBlockStats[]): VmDiskCounters {
  const out: VmDiskCounters = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
  for (const s of stats) {
    out.readBytes += s.stats.rd_bytes;
    out.writeBytes += s.stats.wr_bytes;
    out.readOps += s.stats.rd_operations;
    out.writeOps += s.stats.wr_operations;
  }
  return out;
}

export async function readBlockCounters(client: QmpClient | null): Promise<VmDiskCounters | null> {
  if (!client) return null;
  return sumBlockStats(await client.execute('query-blockstats'));
}

/** The balloon's view of the guest's memory, in bytes. */
export async function readBalloonBytes(client: QmpClient | null): Promise<number | null> {
  if (!client) return null;
  return (await client.execute('query-balloon')).actual;
}

async function readCounter(tap: string, name: string): Promise<number> {
  return Number((await readFile(`/sys/class/net/${tap}/statistics/${name}`, 'utf8')).trim());
}

/**
 * The taps' counters summed, from the guest's point of view: what the host
 * transmits on a tap the guest receives, so rx and tx swap. Null without
 * taps; a tap that vanished meanwhile counts as null too (the VM is ending).
 */
export async function readTapCounters(taps: readonly string[]): Promise<VmNetCounters | null> {
  if (taps.length === 0) return null;
  const out: VmNetCounters = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 };
  try {
    for (const tap of taps) {
      const [tx, rx, txp, rxp] = await Promise.all(['tx_bytes', 'rx_bytes', 'tx_packets', 'rx_packets'].map((n) => readCounter(tap, n)));
      out.rxBytes += tx ?? 0;
      out.txBytes += rx ?? 0;
      out.rxPackets += txp ?? 0;
      out.txPackets += rxp ?? 0;
    }
  } catch {
    return null;
  }
  return out;
}
