/**
 * The foreign check of each resync: qemu processes on this host that no
 * record designates here are reported once each (and stopped with
 * foreign_vms = stop), through findForeignVms (find-foreign.ts).
 */
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import type { AgentConfig } from '../config/agent-config.js';
import type { EventReporter } from './event-reporter.js';
import { findForeignVms } from './find-foreign.js';
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

  async run(designated: ReadonlySet<string>): Promise<void> {
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
    const foreign = findForeignVms(await this.deps.hypervisor.scan(), isDesignated, scope);
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
