/**
 * One APEL record of a VM's finished run (docs/accounting.md), from what
 * the collector measured and the record the VM ran with. A run shorter than
 * fizzle_seconds gets none: the pool's value when the VM is in a pool that
 * sets one, the agent's otherwise.
 */
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { finishedVmUsage, type Accounting } from '../observability/accounting/accounting.js';
import type { VmUsage } from '../observability/collector.js';
import type { PoolRepository } from '../store/pool-repository.js';
import type { StoredVm } from '../store/vm-repository.js';

export interface AccountRunDeps {
  accounting: Accounting;
  pools: PoolRepository;
  logger: Logger;
}

/**
 * Accounts for the run `usage` of the VM whose record is `rec`: call it when
 * the process ended (the collector hears of an exit before the worker does,
 * so the worker still holds the record the VM ran with).
 */
export async function accountRun(usage: VmUsage, rec: StoredVm | null | undefined, deps: AccountRunDeps): Promise<void> {
  const { logger: log } = deps;
  if (!rec?.parsed.ok || usage.endedAt === null) {
    log.warn({ vm: usage.uuid }, `No accounting record for VM ${usage.uuid}: the agent holds no valid record of it.`);
    return;
  }
  const vm = rec.parsed.value;
  let poolFizzle: number | undefined;
  if (vm.pool) {
    const pool = await deps.pools.get(vm.pool).catch((err: unknown) => {
      log.warn({ vm: usage.uuid, pool: vm.pool, err: errorMessage(err) }, "could not read the VM's pool; accounting uses the agent's fizzle_seconds");
      return null;
    });
    if (pool?.parsed.ok) poolFizzle = pool.parsed.value.fizzle_seconds;
  }
  await deps.accounting.vmFinished(finishedVmUsage(vm, { startedAt: usage.startedAt, endedAt: usage.endedAt, cpuSeconds: usage.cpuSeconds }, poolFizzle));
}
