/**
 * Spawns qemu so that it outlives the agent (CONTRACT.md 6): detached into
 * its own session, so signals to the agent's terminal or process group never
 * reach it; stdout and stderr into qemu.log (truncated per start), so qemu's
 * own error line is there to quote; unref'd, so the agent may exit while it
 * runs. Spawn faults are translated here, once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import { DroverError } from '../../lib/errors.js';

/** Resolves once the process exists (its pid is valid). */
export async function spawnQemu(binary: string, argv: string[], logFile: string): Promise<ChildProcess> {
  const log = await open(logFile, 'w', 0o600);
  try {
    const child = spawn(binary, argv, { detached: true, stdio: ['ignore', log.fd, log.fd] });
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
