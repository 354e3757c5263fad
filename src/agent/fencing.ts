/**
 * Fencing on this host (ARCHITECTURE.md, "Fencing"): layer 1 kills every
 * failover VM here when etcd has not confirmed the host's lease for two
 * thirds of its TTL, before the lease can expire and the scheduler can start
 * them elsewhere; the fence file tells the watchdog (a separate process)
 * which failover VMs to kill if the agent itself stops feeding it. Run about
 * every 250 ms by the Agent.
 */
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import type { EventReporter } from './event-reporter.js';
import { writeFenceFile, type FenceFile } from './fence-file.js';
import type { HostRegistration } from './host-registration.js';
import type { VmWorker } from './vm-worker.js';

export interface FencingDeps {
  host: string;
  stateRoot: string;
  hypervisor: Hypervisor;
  registration: HostRegistration;
  workers: () => Iterable<VmWorker>;
  leaseTtlSeconds: () => number;
  reporter: () => EventReporter;
  logger: Logger;
}

export class Fencing {
  /** Failover VMs killed because the lease went stale. */
  private readonly fenced = new Set<string>();

  constructor(private readonly deps: FencingDeps) {}

  /** True (once) when `uuid` exited because fencing killed it: the record decides what comes next once the lease is back. */
  takeFenced(uuid: string): boolean {
    return this.fenced.delete(uuid);
  }

  async check(): Promise<void> {
    const { hypervisor, logger } = this.deps;
    await this.feedWatchdog();
    if (!this.deps.registration.stale()) return;
    for (const w of this.deps.workers()) {
      const rec = w.record;
      if (!rec?.parsed.ok || rec.parsed.value.spec.failover !== true || this.fenced.has(w.uuid)) continue;
      if (hypervisor.inspect(w.uuid).state === 'absent') continue;
      this.fenced.add(w.uuid);
      logger.error({ vm: w.uuid }, `self-fencing: lease not confirmed for 2/3 of its ${this.deps.leaseTtlSeconds()} s TTL; killing failover VM ${rec.parsed.value.name}`);
      void hypervisor.stop(w.uuid, { timeoutMs: 0, force: true }).catch((err: unknown) => logger.error({ vm: w.uuid, err: errorMessage(err) }, 'self-fencing could not kill the VM'));
      void this.deps.reporter().report({ level: 'error', event: 'vm.fenced', vm: w.uuid, message: `Host ${this.deps.host} lost contact with etcd for two thirds of its lease TTL and killed failover VM ${rec.parsed.value.name} before its lease could expire.`, email: true });
    }
  }

  /** Tells the watchdog which failover VMs to kill if this agent stops feeding it. */
  private async feedWatchdog(): Promise<void> {
    const vms: FenceFile['vms'] = [];
    for (const w of this.deps.workers()) {
      const rec = w.record;
      if (!rec?.parsed.ok || rec.parsed.value.spec.failover !== true) continue;
      const seen = this.deps.hypervisor.inspect(w.uuid);
      if (seen.state !== 'absent') vms.push({ uuid: w.uuid, pid: seen.handle.pid, start_time: seen.handle.startTime });
    }
    const fence = { written_at: Date.now(), renewed_at: this.deps.registration.renewedAtMs, ttl_ms: this.deps.leaseTtlSeconds() * 1000, vms };
    await writeFenceFile(this.deps.stateRoot, fence).catch((err: unknown) => this.deps.logger.warn({ err: errorMessage(err) }, 'could not write the fence file'));
  }
}
