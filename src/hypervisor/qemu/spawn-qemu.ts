/**
 * Spawns qemu so that it outlives the agent (CONTRACT.md 6): detached into
 * its own session, so signals to the agent's terminal or process group never
 * reach it; stdout and stderr into qemu.log (truncated per start), so qemu's
 * own error line is there to quote; unref'd, so the agent may exit while it
 * runs. Spawn faults are translated here, once.
 *
 * Confinement (docs/security.md): with `user`, the child drops to that uid
 * and gid (and no supplementary groups: libuv clears them) before it execs
 * qemu, so qemu never runs as root and its seccomp filter never has to allow
 * a privilege change. `fds` are open files qemu inherits as 3, 4, ...
 *
 * qemu.log sits in a run dir qemu's user owns, so it is removed and created
 * afresh (O_EXCL): a symlink left there is never followed by the agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, rm } from 'node:fs/promises';
import { DroverError } from '../../lib/errors.js';
import type { QemuUser } from './qemu-user.js';

export interface SpawnQemuOptions {
  /** Run as this user; the agent's own user when null. */
  user: QemuUser | null;
  /** Descriptors qemu inherits as fd 3, 4, ... in this order. */
  fds?: readonly number[];
}

/** Resolves once the process exists (its pid is valid). */
export async function spawnQemu(binary: string, argv: string[], logFile: string, opts: SpawnQemuOptions = { user: null }): Promise<ChildProcess> {
  await rm(logFile, { force: true });
  const log = await open(logFile, 'wx', 0o600);
  try {
    const child = spawn(binary, argv, {
      detached: true,
      stdio: ['ignore', log.fd, log.fd, ...(opts.fds ?? [])],
      ...(opts.user !== null ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    child.unref();
    return child;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new DroverError('SPAWN_FAILED', `The qemu binary ${binary} was not found; install qemu-system-x86 or configure its path.`, false);
    }
    throw new DroverError('SPAWN_FAILED', `qemu (${binary}) could not be started: ${(err as Error).message}.`, code === 'EAGAIN', { cause: err });
  } finally {
    await log.close();
  }
}
