/**
 * The agent's state directory: readable by the agent's user only. The
 * root and vms/ are 0711 (searchable, not listable), so qemu, running as
 * qemu_user, can reach its own run directory <state>/vms/<uuid>, which it
 * owns (docs/security.md, "Confined qemu"); everything else stays 0700/0600.
 *
 *   <state>/hostid      this host's UUID, generated once, kept across
 *                       restarts, upgrades and renames (chunter's hostid)
 *   <state>/agent.pid   the running agent's pid and process start time: one
 *                       agent per state dir
 *   <state>/vms/<uuid>/ one VM's runtime files (the hypervisor's)
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DroverError } from '../lib/errors.js';
import { UUID_RE } from '../contract/vm-record.js';
import { readStartTime } from '../hypervisor/qemu/proc.js';

export interface StateDir {
  root: string;
  vmsDir: string;
  hostid: string;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}

async function readTrimmed(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return null;
  }
}

/**
 * Whether the agent that wrote agent.pid still runs. Its pid alone is not
 * enough: after a kill -9 the pid is free, and once pids wrap it can belong
 * to any process (a qemu whose argv names the state dir, another agent), so
 * the process start time written beside it must match too. A file without
 * one (written by an older agent) falls back to the argv check.
 */
async function isLiveAgent(pid: number, startTime: number | null): Promise<boolean> {
  if (pid === process.pid) return false;
  const cmdline = await readTrimmed(`/proc/${pid}/cmdline`);
  if (cmdline === null || !cmdline.includes('drover')) return false;
  return startTime === null || (await readStartTime(pid)) === startTime;
}

/** Creates (mode 0711) and locks the state dir, and reads or makes the hostid. */
export async function openStateDir(root: string): Promise<StateDir> {
  await mkdir(root, { recursive: true, mode: 0o711 });
  await chmod(root, 0o711);
  const vmsDir = join(root, 'vms');
  await mkdir(vmsDir, { recursive: true, mode: 0o711 });
  await chmod(vmsDir, 0o711);

  const pidFile = join(root, 'agent.pid');
  const [otherPid, otherStart] = (await readTrimmed(pidFile))?.split(/\s+/) ?? [];
  const other = Number(otherPid);
  const started = otherStart !== undefined && /^\d+$/.test(otherStart) ? Number(otherStart) : null;
  if (Number.isInteger(other) && other > 0 && (await isLiveAgent(other, started))) {
    throw new DroverError('STATE_DIR_LOCKED', `Another drover agent (pid ${other}) is using the state dir ${root}; stop it or use another --state-dir.`);
  }
  await writeAtomic(pidFile, `${process.pid} ${(await readStartTime(process.pid)) ?? ''}\n`);

  const hostidFile = join(root, 'hostid');
  let hostid = await readTrimmed(hostidFile);
  if (hostid === null || !UUID_RE.test(hostid)) {
    hostid = randomUUID();
    await writeAtomic(hostidFile, `${hostid}\n`);
  }
  return { root, vmsDir, hostid };
}
