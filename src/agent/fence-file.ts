/**
 * `<state>/fence.json`: what the agent tells its watchdog every 250 ms.
 * If the file stops changing (the agent is frozen or dead) or says the lease
 * is stale (both: for two thirds of the TTL), the watchdog kills the listed failover VMs (ARCHITECTURE.md,
 * "Fencing").
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fenceAfterMs } from './host-registration.js';

export interface FenceFile {
  /** When the agent wrote this file (ms since the epoch). */
  written_at: number;
  /** When etcd last confirmed the agent's lease; 0 when it holds none yet. */
  renewed_at: number;
  /** The lease TTL in ms; the watchdog acts after two thirds of it. */
  ttl_ms: number;
  /** Failover VMs running here: the watchdog kills these. */
  vms: Array<{ uuid: string; pid: number; start_time: number }>;
}

export function fencePath(stateDir: string): string {
  return join(stateDir, 'fence.json');
}

export async function writeFenceFile(stateDir: string, fence: FenceFile): Promise<void> {
  const path = fencePath(stateDir);
  const tmp = `${path}.tmp`;
  await writeFile(tmp, JSON.stringify(fence), { mode: 0o600 });
  await rename(tmp, path);
}

export async function readFenceFile(stateDir: string): Promise<FenceFile | null> {
  try {
    const v = JSON.parse(await readFile(fencePath(stateDir), 'utf8')) as FenceFile;
    return typeof v.written_at === 'number' && Array.isArray(v.vms) ? v : null;
  } catch {
    return null;
  }
}

/** Whether the watchdog must fence now: the agent stopped feeding it, or its lease is stale. */
export function mustFence(f: FenceFile, now: number): boolean {
  const limit = fenceAfterMs(f.ttl_ms);
  return now - f.written_at > limit || (f.renewed_at > 0 && now - f.renewed_at > limit);
}
