/**
 * The agent's state directory: readable by the agent's user only. The
 * root and vms/ are 0711 (searchable, not listable), so qemu, running as
 * qemu_user, can reach its own run directory <state>/vms/<uuid>, which it
 * owns (docs/security.md, "Confined qemu"); everything else stays 0700/0600.
 *
 *   <state>/hostid      this host's UUID, generated once, kept across
 *                       restarts, upgrades and renames (chunter's hostid)
 *   <state>/agent.pid   the running agent's pid: one agent per state dir
 *   <state>/vms/<uuid>/ one VM's runtime files (the hypervisor's)
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DroverError } from '../lib/errors.js';
import { UUID_RE } from '../contract/vm-record.js';

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

async function isLiveAgent(pid: number): Promise<boolean> {
  if (pid === process.pid) return false;
  const cmdline = await readTrimmed(`/proc/${pid}/cmdline`);
  return cmdline !== null && cmdline.includes('drover');
}

/** Creates (mode 0711) and locks the state dir, and reads or makes the hostid. */
export async function openStateDir(root: string): Promise<StateDir> {
  await mkdir(root, { recursive: true, mode: 0o711 });
  await chmod(root, 0o711);
  const vmsDir = join(root, 'vms');
  await mkdir(vmsDir, { recursive: true, mode: 0o711 });
  await chmod(vmsDir, 0o711);

  const pidFile = join(root, 'agent.pid');
  const other = Number(await readTrimmed(pidFile));
  if (Number.isInteger(other) && other > 0 && (await isLiveAgent(other))) {
    throw new DroverError('STATE_DIR_LOCKED', `Another drover agent (pid ${other}) is using the state dir ${root}; stop it or use another --state-dir.`);
  }
  await writeAtomic(pidFile, `${process.pid}\n`);

  const hostidFile = join(root, 'hostid');
  let hostid = await readTrimmed(hostidFile);
  if (hostid === null || !UUID_RE.test(hostid)) {
    hostid = randomUUID();
    await writeAtomic(hostidFile, `${hostid}\n`);
  }
  return { root, vmsDir, hostid };
}
