/**
 * The first thing an agent does (ARCHITECTURE.md, "Never touch running VMs
 * on the agent's own restart"): re-attach to every VM whose handle a
 * previous agent saved, checking that the pid is still the same process,
 * before it reads a single record. A VM adopted here is never restarted.
 */
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor } from '../hypervisor/hypervisor.js';

/** Recovers every saved handle; one that cannot be recovered is logged and the others go on. */
export async function adoptRunningVms(hypervisor: Hypervisor, log: Logger): Promise<void> {
  const saved = await hypervisor.listSaved();
  for (const uuid of saved) {
    try {
      const handle = await hypervisor.recover(uuid);
      if (handle) log.info({ vm: uuid, pid: handle.pid }, 'adopted running VM');
      else log.info({ vm: uuid }, 'saved VM is not running');
    } catch (err) {
      log.warn({ vm: uuid, err: errorMessage(err) }, 'could not adopt VM');
    }
  }
}
