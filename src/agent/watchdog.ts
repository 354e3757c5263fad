/**
 * The watchdog beside the agent (after Proxmox HA's, which resets a node
 * whose manager stops feeding it). A separate, tiny process: a frozen
 * (SIGSTOP) or wedged agent cannot fence its own failover VMs, so this
 * process does, when the agent's fence file goes stale for 2/3 of the TTL.
 * It never talks to etcd; it only reads the file and kills listed pids
 * whose process start time still matches.
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../lib/logger.js';
import { mustFence, readFenceFile } from './fence-file.js';

async function startTimeOf(pid: number): Promise<number | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[19]);
}

export async function runWatchdog(stateDir: string, logger: Logger, intervalMs = 100): Promise<never> {
  await writeFile(join(stateDir, 'watchdog.pid'), `${process.pid}\n`, { mode: 0o600 });
  const killed = new Set<number>();
  for (;;) {
    if (!(await access(stateDir).then(() => true, () => false))) {
      logger.info({ stateDir }, 'watchdog: the state dir is gone; exiting');
      process.exit(0);
    }
    const fence = await readFenceFile(stateDir);
    if (fence && mustFence(fence, Date.now())) {
      for (const vm of fence.vms) {
        if (killed.has(vm.pid) || (await startTimeOf(vm.pid)) !== vm.start_time) continue;
        try {
          process.kill(vm.pid, 'SIGKILL');
          killed.add(vm.pid);
          logger.error({ vm: vm.uuid, pid: vm.pid }, 'watchdog: the agent stopped confirming its lease; killed failover VM');
        } catch {
          // already gone
        }
      }
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
