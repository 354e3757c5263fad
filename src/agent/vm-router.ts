/**
 * The agent's VM workers and the routing of records to them: one VmWorker
 * per VM this host has to act on (STYLE.md 4), made on first need and
 * wired to the host's hypervisor, repository, disks, lease and settings.
 *
 * A record is this host's to act on when it is designated here, when it is
 * a live migration to here, when its JSON is unreadable (no host to tell;
 * compare-and-swap makes the race between agents safe), or when this host
 * runs the VM. A worker, once made, is offered every newer record of its VM
 * (also one that moved away, so it can let go).
 */
import type { AgentConfig } from '../config/agent-config.js';
import { DroverError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor } from '../hypervisor/hypervisor.js';
import type { VmInfo } from '../observability/vm-stats.js';
import type { DiskPreparer } from '../storage/prepare-disks.js';
import type { StoredVm, VmRepository } from '../store/vm-repository.js';
import type { BackupRunner } from './backup-runner.js';
import type { CrashTracker } from './crash-tracker.js';
import type { EventReporter } from './event-reporter.js';
import { detectIp } from './host-facts.js';
import type { HostRegistration } from './host-registration.js';
import { designatedHostOfRaw, isDesignatedTo, type PlanLimits } from './plan-vm.js';
import { snapshotDiskSpec } from './snapshot-disks.js';
import { VmWorker } from './vm-worker.js';

export interface VmRouterDeps {
  host: string;
  hypervisor: Hypervisor;
  repo: VmRepository;
  /** The agent's reporter when a worker is made (a config reload may replace it). */
  reporter: () => EventReporter;
  crashes: CrashTracker;
  config: () => AgentConfig;
  disks: DiskPreparer;
  /** `<state>/vms`, where each VM's disks live. */
  vmsDir: string;
  /** Whether the liveness lease is fresh: no VM starts without it (fencing, ARCHITECTURE.md). */
  registration: Pick<HostRegistration, 'fresh'>;
  /** Backups asked through `backup_request` of the VMs designated here. */
  backups: Pick<BackupRunner, 'offer'>;
  logger: Logger;
}

export class VmRouter {
  private readonly workers = new Map<string, VmWorker>();

  constructor(private readonly deps: VmRouterDeps) {}

  /** Hands a record to its worker when it is this host's to act on (see the top of this file). */
  route(vm: StoredVm, revision: string): void {
    const { host, hypervisor } = this.deps;
    const existing = this.workers.get(vm.uuid);
    const ours =
      isDesignatedTo(vm, host) ||
      (vm.parsed.ok && vm.parsed.value.migration?.target === host) ||
      (!vm.parsed.ok && !designatedHostOfRaw(vm.raw)) ||
      hypervisor.inspect(vm.uuid).state !== 'absent';
    if (ours || existing) this.worker(vm.uuid).offer(vm, revision);
    if (isDesignatedTo(vm, host)) this.deps.backups.offer(vm);
  }

  /** VM `uuid`'s record was deleted at `revision`. */
  deleted(uuid: string, revision: string): void {
    this.workers.get(uuid)?.offer(null, revision);
  }

  /** The worker of VM `uuid`, if it has one. */
  get(uuid: string): VmWorker | undefined {
    return this.workers.get(uuid);
  }

  /** Every worker made so far. */
  all(): Iterable<VmWorker> {
    return this.workers.values();
  }

  /** The worker of VM `uuid`, made now if it has none. */
  worker(uuid: string): VmWorker {
    let w = this.workers.get(uuid);
    if (!w) {
      w = this.makeWorker(uuid);
      this.workers.set(uuid, w);
    }
    return w;
  }

  /** The VMs this host runs, with what their records say (name, vCPUs, memory), for the collector. */
  *measuredVms(): Iterable<VmInfo> {
    for (const w of this.workers.values()) {
      const rec = w.record;
      if (!rec?.parsed.ok || this.deps.hypervisor.inspect(w.uuid).state === 'absent') continue;
      const { name, spec } = rec.parsed.value;
      yield { uuid: w.uuid, name, vcpus: spec.vcpus, memory: spec.memory };
    }
  }

  /** Resolves once every worker is idle. */
  async whenIdle(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.whenIdle()));
  }

  /** Stops every worker's retries; running VMs are left alone. */
  close(): void {
    for (const w of this.workers.values()) w.close();
  }

  private makeWorker(uuid: string): VmWorker {
    const { host, hypervisor, repo, crashes, config, disks, vmsDir, registration, logger } = this.deps;
    return new VmWorker(uuid, {
      host,
      hypervisor,
      repo,
      reporter: this.deps.reporter(),
      crashes,
      limits: () => limitsOf(config()),
      logger,
      now: () => new Date(),
      sharedStorage: () => config().shared_storage,
      prepareDisks: (uuid, spec) => disks.prepare(uuid, spec),
      snapshotDisks: (uuid, spec) => snapshotDiskSpec(vmsDir, uuid, spec),
      migration: () => {
        const c = config();
        return {
          listenHost: c.migration_address ?? c.ip ?? detectIp(),
          prepareTimeoutMs: c.migration_prepare_timeout * 1000,
          timeoutMs: c.migration_timeout * 1000,
        };
      },
      assertMayStart: () => {
        if (!registration.fresh()) {
          throw new DroverError('ETCD_UNAVAILABLE', `Host ${host} has no fresh lease in etcd, so it starts no VM until the lease is renewed.`, true);
        }
      },
    });
  }
}

/** The restart and stop settings planVm works with. */
function limitsOf(c: AgentConfig): PlanLimits {
  return {
    crashLimit: c.crash_limit,
    crashWindowSeconds: c.crash_window,
    stopTimeoutMs: c.stop_timeout * 1000,
    backoffMinMs: c.restart_backoff_min * 1000,
    backoffMaxMs: c.restart_backoff_max * 1000,
  };
}
