/**
 * The foreign check, at the agent's start and at each resync: qemu
 * processes on this host that no record designates here are reported once
 * each (and stopped with foreign_vms = stop), through findForeignVms
 * (find-foreign.ts). At the start the agent finds them between its first
 * list of etcd and handing the records to workers, so no qemu a worker is
 * spawning can be taken for a foreign one; it reports them right after.
 */
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import type { AgentConfig } from '../config/agent-config.js';
import type { EventReporter } from './event-reporter.js';
import { findForeignVms, type ForeignVm } from './find-foreign.js';
import type { StoredVm } from '../store/vm-repository.js';
import type { VmWorker } from './vm-worker.js';

export interface ForeignCheckDeps {
  host: string;
  stateRoot: string;
  hypervisor: Hypervisor;
  worker: (uuid: string) => VmWorker | undefined;
  config: () => AgentConfig;
  reporter: () => EventReporter;
  logger: Logger;
}

export class ForeignCheck {
  /** Pids already reported (each is reported once, while it lives). */
  private readonly reported = new Set<number>();

  constructor(private readonly deps: ForeignCheckDeps) {}

  /** Finds, then reports (and with foreign_vms = stop, stops) the foreign qemu processes. */
  async run(designated: ReadonlySet<string>): Promise<void> {
    await this.act(await this.find(designated));
  }

  /** The qemu processes no record designates here: neither in `designated` nor in a worker's newest record. */
  async find(designated: ReadonlySet<string>): Promise<ForeignVm[]> {
    const config = this.deps.config();
    const scope = config.foreign_scope === 'all' ? ({ kind: 'all' } as const) : ({ kind: 'state-dir', stateDir: this.deps.stateRoot } as const);
    // The listed set, or the newest record a worker holds (a VM created after the list).
    const isDesignated = (uuid: string): boolean => {
      if (designated.has(uuid)) return true;
      const rec = this.deps.worker(uuid)?.record;
      if (rec?.parsed.ok !== true) return false;
      // A migration's target runs the VM's qemu before the record names it.
      const { host, migration } = rec.parsed.value;
      return host === this.deps.host || migration?.target === this.deps.host;
    };
    return findForeignVms(await this.deps.hypervisor.scan(), isDesignated, scope);
  }

  /** Reports each of `foreign` not reported yet (and stops it with foreign_vms = stop); forgets those gone. */
  async act(foreign: readonly ForeignVm[]): Promise<void> {
    const config = this.deps.config();
    const live = new Set(foreign.map((f) => f.vm.pid));
    for (const pid of this.reported) if (!live.has(pid)) this.reported.delete(pid);
    for (const f of foreign) {
      if (this.reported.has(f.vm.pid)) continue;
      this.reported.add(f.vm.pid);
      const stop = config.foreign_vms === 'stop';
      await this.deps.reporter().report({
        level: 'warn',
        event: 'vm.foreign',
        ...(f.vm.uuid ? { vm: f.vm.uuid } : {}),
        message: `${f.why} ${stop ? 'Stopping it (foreign_vms = stop).' : 'Leaving it running (foreign_vms = report).'}`,
        email: true,
      });
      if (stop) {
        try {
          process.kill(f.vm.pid, 'SIGTERM');
        } catch (err) {
          this.deps.logger.warn({ pid: f.vm.pid, err: errorMessage(err) }, 'could not stop foreign qemu');
        }
      }
    }
  }
}

/** The VMs `vms` designates to `host`, or moves to it by a live migration (whose target runs qemu before the record names it). */
export function designatedHere(vms: readonly StoredVm[], host: string): Set<string> {
  const here = new Set<string>();
  for (const vm of vms) {
    if (vm.parsed.ok && (vm.parsed.value.host === host || vm.parsed.value.migration?.target === host)) here.add(vm.uuid);
  }
  return here;
}
