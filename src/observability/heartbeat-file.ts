/**
 * The agent's heartbeat file, `<state>/heartbeat` (Vcycle's heartbeat, seed
 * 001): the agent rewrites it at every process check cycle, so its age says
 * whether the agent's main loop still turns. `drover check-heartbeat SECONDS`
 * (the Nagios plugin) reads its modification time.
 */
import { rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const HEARTBEAT_FILE = 'heartbeat';

export function heartbeatPath(stateDir: string): string {
  return join(stateDir, HEARTBEAT_FILE);
}

/** Rewrites the file (atomically) with the time and the agent's pid. */
export async function touchHeartbeat(stateDir: string, now: Date = new Date()): Promise<void> {
  const path = heartbeatPath(stateDir);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${now.toISOString()} ${process.pid}\n`, { mode: 0o644 });
  await rename(tmp, path);
}

/** Seconds since the file was last written, or null when it does not exist. Other errors are thrown. */
export async function heartbeatAgeSeconds(path: string, now: Date = new Date()): Promise<number | null> {
  try {
    const s = await stat(path);
    return Math.max(0, (now.getTime() - s.mtimeMs) / 1000);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
