/**
 * The drover agent: one per hypervisor host.
 *
 * Overview of responsibilities
 *  - claim the host's name and keep its liveness lease (HostRegistration);
 *  - adopt the VMs a previous agent left running (Hypervisor.recover), never
 *    restarting them;
 *  - list then watch `P/vm/` from the listed revision, so no change is
 *    missed (VmWatch), and hand each record designated to this host to its
 *    VmWorker (VmRouter);
 *  - check the host once at start-up, right after adoption and the first
 *    list: a VM that should run but does not is started again (its worker
 *    sees it at the list), a qemu no record designates here is reported
 *    (ForeignCheck);
 *  - pass process exits from the hypervisor to the VM's worker;
 *  - every resync_interval (and on SIGHUP, and after etcd comes back):
 *    re-read the config, re-offer every record (catches missed changes and
 *    VMs that should run but do not), report foreign qemu processes, prune
 *    old events;
 *  - heartbeat the host record and fence (AgentTimers keeps the clocks);
 *  - measure every VM and the host (the Collector, docs/metrics.md): the
 *    Prometheus endpoint on metrics_listen, the summary P/stats/<name> under
 *    the liveness lease, the heartbeat file, the storage alarm.
 *
 * Theory of operation
 *  The decision of what to do for a VM is planVm, a pure function; this
 *  class only wires the parts and routes inputs to workers. etcd being away never stops a VM:
 *  workers back off and retry, the watch reconnects by itself and a resync
 *  follows, and a lost lease is claimed again.
 */
import type { Etcd3 } from 'etcd3';
import { keySpace, type KeySpace } from '../contract/keys.js';
import { applyReload, type AgentConfig } from '../config/agent-config.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor, VmExit } from '../hypervisor/hypervisor.js';
import { EventLog } from '../store/event-log.js';
import { KvStore } from '../store/kv-store.js';
import { VmRepository, type StoredVm } from '../store/vm-repository.js';
import { accountRun } from './account-run.js';
import { adoptRunningVms } from './adopt-vms.js';
import { AgentTimers } from './agent-timers.js';
import { CrashTracker } from './crash-tracker.js';
import { EventReporter } from './event-reporter.js';
import type { ForeignVm } from './find-foreign.js';
import { designatedHere, ForeignCheck } from './foreign-check.js';
import { Fencing } from './fencing.js';
import { detectIp, hostCpus, hostMemoryMiB } from './host-facts.js';
import { designatedUsage, HostRegistration } from './host-registration.js';
import { startMetricsEndpoint } from './metrics-endpoint.js';
import { createNotifier, type Notifier } from './notifier.js';
import { retryUntilDone } from './retry.js';
import type { StateDir } from './state-dir.js';
import { VmRouter } from './vm-router.js';
import { VmWatch } from './vm-watch.js';
import { BackupRunner } from './backup-runner.js';
import { startConfiguredConsoleServer, type ConsoleServer } from './console-server.js';
import { AuthRepository } from '../store/auth-repository.js';
import { createAgentDiskPreparer } from '../storage/agent-disks.js';
import type { DiskPreparer } from '../storage/prepare-disks.js';
import { s3CredentialsFrom } from '../storage/s3/location.js';
import { Collector, type VmUsage } from '../observability/collector.js';
import { Accounting } from '../observability/accounting/accounting.js';
import { PoolRepository } from '../store/pool-repository.js';
import type { MetricsServer } from '../observability/metrics-server.js';

export interface AgentDeps {
  config: AgentConfig;
  /** Re-reads the config (SIGHUP, each resync); absent when there is no file. */
  reloadConfig?: () => Promise<AgentConfig>;
  client: Etcd3;
  hypervisor: Hypervisor;
  stateDir: StateDir;
  logger: Logger;
  version: string;
}

export class Agent {
  private config: AgentConfig;
  private readonly keys: KeySpace;
  private readonly kv: KvStore;
  private readonly repo: VmRepository;
  private readonly events: EventLog;
  private readonly registration: HostRegistration;
  /** Image disks into overlay files before a start (docs/storage.md). */
  private readonly disks: DiskPreparer;
  /** The VM workers, and which records go to them. */
  private readonly router: VmRouter;
  private readonly vmWatch: VmWatch;
  private readonly timers: AgentTimers;
  /** Backups and restores asked through `backup_request` (docs/backups.md). */
  private readonly backups: BackupRunner;
  private readonly fencing: Fencing;
  private readonly foreign: ForeignCheck;
  private notifier: Notifier;
  private reporter: EventReporter;
  private stopped = false;
  private unsubscribeExit: (() => void) | null = null;
  private resyncRunning: Promise<void> | null = null;
  private readonly log: Logger;
  /** VM and host measurements (docs/metrics.md); built first so it hears of every exit before the workers do. */
  readonly collector: Collector;
  private metricsServer: MetricsServer | null = null;
  private consoleServer: ConsoleServer | null = null;
  /** APEL records of finished runs (docs/accounting.md). */
  private readonly accounting: Accounting;
  private readonly pools: PoolRepository;

  constructor(private readonly deps: AgentDeps) {
    this.config = deps.config;
    this.log = deps.logger;
    this.collector = new Collector({
      host: deps.config.name,
      stateDir: deps.stateDir.root,
      cpus: hostCpus(),
      hypervisor: deps.hypervisor,
      settings: () => this.config,
      vms: () => this.router.measuredVms(),
      writeSummary: async (stats) => {
        if (!(await this.registration.putUnderLease(this.keys.stats(this.name), JSON.stringify(stats)))) {
          this.log.debug('no liveness lease; the stats summary waits for the next interval');
        }
      },
      report: (r) => this.reporter.report(r),
      logger: this.log,
    });
    this.keys = keySpace(deps.config.prefix);
    this.kv = new KvStore(deps.client);
    this.repo = new VmRepository(this.kv, this.keys);
    this.pools = new PoolRepository(this.kv, this.keys);
    this.accounting = new Accounting({ stateDir: deps.stateDir.root, host: deps.config.name, config: () => this.config, logger: this.log, cloudType: `drover/${deps.version}` });
    this.collector.onFinished((usage) => void accountRun(usage, this.router.get(usage.uuid)?.record, { accounting: this.accounting, pools: this.pools, logger: this.log }));
    this.events = new EventLog(this.kv, this.keys);
    this.notifier = this.makeNotifier();
    this.reporter = new EventReporter(this.name, this.events, this.notifier, this.log);
    this.backups = new BackupRunner({
      host: deps.config.name,
      store: { keys: this.keys, kv: this.kv, vms: this.repo },
      stateDir: deps.stateDir.root,
      config: () => this.config,
      reporter: this.reporter,
      logger: this.log,
      now: () => new Date(),
    });
    this.disks = createAgentDiskPreparer({
      kv: this.kv,
      keys: this.keys,
      stateRoot: deps.stateDir.root,
      vmsDir: deps.stateDir.vmsDir,
      credentials: () => s3CredentialsFrom(this.config.s3_access_key_id, this.config.s3_secret_access_key),
      downloadAttempts: deps.config.image_download_attempts,
      logger: this.log,
      onRefused: (image, why, attempt) =>
        void this.reporter.report({ level: 'error', event: 'image.refused', message: `Image ${image.name}:${image.version} (${image.uuid}), download ${attempt}: ${why}` }),
    });
    this.registration = new HostRegistration(
      deps.client,
      this.kv,
      this.keys,
      {
        name: this.name,
        hostid: deps.stateDir.hostid,
        ip: deps.config.ip ?? detectIp(),
        cpus: hostCpus(),
        memory: hostMemoryMiB(),
        version: deps.version,
        accel: deps.hypervisor.accel,
      },
      deps.config.lease_ttl,
      this.log,
    );
    const shared = { host: deps.config.name, stateRoot: deps.stateDir.root, hypervisor: deps.hypervisor, reporter: () => this.reporter, logger: this.log };
    this.router = new VmRouter({
      ...shared,
      repo: this.repo,
      crashes: new CrashTracker(() => this.config.crash_window * 1000),
      config: () => this.config,
      disks: this.disks,
      vmsDir: deps.stateDir.vmsDir,
      registration: this.registration,
      backups: this.backups,
    });
    this.fencing = new Fencing({ ...shared, registration: this.registration, workers: () => this.router.all(), leaseTtlSeconds: () => this.config.lease_ttl });
    this.foreign = new ForeignCheck({ ...shared, worker: (uuid) => this.router.get(uuid), config: () => this.config });
    const retry = (what: string, fn: () => Promise<void>): Promise<void> => this.retryUntilDone(what, fn);
    this.vmWatch = new VmWatch({ kv: this.kv, keys: this.keys, repo: this.repo, router: this.router, retry, resync: (reason) => this.resync(reason), logger: this.log });
    this.timers = new AgentTimers({
      config: () => this.config,
      heartbeat: () => this.heartbeat(),
      fence: () => this.fencing.check(),
      resync: (reason) => this.resync(reason),
      refreshSnapshots: () => this.refreshSnapshots(),
      logger: this.log,
    });
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * Claims the host name (retrying while etcd is away; a name held by another
   * live host is fatal), adopts running VMs, then starts watching and checks
   * the host once (see startupCheck).
   */
  async start(): Promise<void> {
    this.unsubscribeExit = this.deps.hypervisor.onExit((exit) => this.onExit(exit));
    await adoptRunningVms(this.deps.hypervisor, this.log);
    await this.retryUntilDone('claim the host name', () => this.registration.claim());
    this.registration.on('lost', () => void this.reclaim());
    await this.startupCheck();
    this.consoleServer = await startConfiguredConsoleServer(this.config.console_listen, this.registration.ip, { host: this.name, stateDir: this.deps.stateDir.root, auth: new AuthRepository(this.kv, this.keys), vms: this.repo, logger: this.log });
    await this.heartbeat();
    this.metricsServer = await startMetricsEndpoint(this.config.metrics_listen, this.collector.metrics.registry, this.log);
    // Not awaited: a qemu slow to answer QMP must not hold up the agent's start.
    void this.collector.start();
    await this.reporter.report({ level: 'info', event: 'host.up', message: `Agent ${this.name} is up (hostid ${this.deps.stateDir.hostid}, accel ${this.deps.hypervisor.accel}).` });
    this.timers.start();
  }

  /**
   * The periodic check's look at the host, without waiting resync_interval
   * for it: the first list goes to the workers (one that should run and
   * does not is started again, vm.missing), and the qemu processes no
   * record designates here are reported (vm.foreign) and, with
   * foreign_vms = stop, stopped. The processes are scanned after the list
   * and before any worker acts on it, so no qemu a worker is spawning is
   * taken for a foreign one; adopted VMs are already managed by then.
   */
  private async startupCheck(): Promise<void> {
    let foreign: ForeignVm[] | undefined;
    const scan = async (vms: readonly StoredVm[]): Promise<void> => {
      // Once: a retried list may come after the first one's records reached the workers.
      if (foreign) return;
      foreign = await this.foreign.find(designatedHere(vms, this.name)).catch((err: unknown) => {
        this.log.warn({ err: errorMessage(err) }, 'could not scan the host for foreign qemu processes; the next resync will');
        return [];
      });
    };
    await this.retryUntilDone('list and watch VMs', () => this.vmWatch.listAndWatch(scan));
    await this.foreign.act(foreign ?? []);
  }

  /**
   * What VM `uuid`'s qemu process used (start, end, CPU seconds), for
   * accounting: call it from an exit listener, or use
   * `collector.onFinished` (docs/metrics.md, "Usage for accounting").
   */
  lastUsage(uuid: string): VmUsage | undefined {
    return this.collector.lastUsage(uuid);
  }

  /** Where the Prometheus endpoint listens (HOST:PORT), or null when it is off. */
  get metricsAddress(): string | null {
    return this.metricsServer?.address ?? null;
  }

  /** Stops the agent, leaving every VM running (they are adopted on the next start). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.timers.stop();
    this.collector.stop();
    await this.metricsServer?.close();
    await this.consoleServer?.close();
    // etcd may be unreachable: do not let a hanging cancel keep the agent alive.
    await this.vmWatch.close();
    this.unsubscribeExit?.();
    this.router.close();
    await this.deps.hypervisor.detachAll();
    this.registration.release();
    this.notifier.close();
  }

  /** Resolves once every worker is idle (for tests and orderly shutdown). */
  async whenIdle(): Promise<void> {
    await this.router.whenIdle();
    await this.backups.whenIdle();
  }

  /** The periodic check; also run on SIGHUP and after etcd comes back. */
  resync(reason: string): Promise<void> {
    this.resyncRunning ??= this.doResync(reason).finally(() => (this.resyncRunning = null));
    return this.resyncRunning;
  }

  private async doResync(reason: string): Promise<void> {
    this.log.info({ reason }, 'resync');
    await this.reloadConfig();
    const { vms } = await this.repo.list();
    for (const vm of vms) this.router.route(vm, vm.modRevision);
    await this.foreign.run(designatedHere(vms, this.name));
    const pruned = await this.events.prune(this.config.event_retention);
    if (pruned > 0) this.log.info({ pruned }, 'pruned old events');
    await this.heartbeat();
    // Cached images no VM on this host uses any more (docs/storage.md, "Host cache").
    await this.disks.vacuum().then(
      (r) => {
        if (r.removed.length > 0) this.log.info({ removed: r.removed.map((i) => i.sha256) }, 'vacuumed the image cache');
      },
      (err: unknown) => this.log.warn({ err: errorMessage(err) }, 'image cache vacuum failed'),
    );
  }

  private onExit(exit: VmExit): void {
    this.log.info({ vm: exit.uuid, reason: exit.reason, detail: exit.detail }, 'VM process ended');
    if (this.fencing.takeFenced(exit.uuid)) {
      // Fenced, not stopped: once the lease is back the record decides (still
      // ours and RUNNING: start it again; failed over: leave it).
      this.router.worker(exit.uuid).kick();
      return;
    }
    this.router.worker(exit.uuid).exited(exit);
  }

  private async heartbeat(): Promise<void> {
    const { vmMemory, vms } = designatedUsage([...this.router.all()].map((w) => w.record), this.name);
    try {
      await this.registration.heartbeat({ vmMemory, vms, reservedMemory: this.config.reserved_memory, ...(this.consoleServer ? { console: this.consoleServer.endpoint } : {}) });
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'heartbeat failed');
    }
  }

  private async reclaim(): Promise<void> {
    if (this.stopped) return;
    await this.retryUntilDone('claim the host name again', () => this.registration.claim()).catch((err: unknown) => {
      this.log.fatal({ err: errorMessage(err) }, 'cannot hold the host name any more');
    });
    if (this.registration.claimed) await this.resync('lease renewed').catch(() => undefined);
  }

  private async reloadConfig(): Promise<void> {
    if (!this.deps.reloadConfig) return;
    let next: AgentConfig;
    try {
      next = await this.deps.reloadConfig();
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'config reload failed; keeping the current config');
      return;
    }
    const { config, waiting } = applyReload(this.config, next);
    for (const key of waiting) this.log.warn({ key }, `config key ${key} changed; it takes effect after a restart`);
    const mailChanged = next.smtp_url !== this.config.smtp_url || next.notify_email.join() !== this.config.notify_email.join();
    this.config = config;
    this.log.level = this.config.log_level;
    if (mailChanged) {
      this.notifier.close();
      this.notifier = this.makeNotifier();
      this.reporter = new EventReporter(this.name, this.events, this.notifier, this.log);
    }
  }

  private makeNotifier(): Notifier {
    return createNotifier({ smtpUrl: this.config.smtp_url, to: this.config.notify_email, from: this.config.notify_from });
  }

  /** Each VM designated here re-reads its disks' snapshots into its record (its worker does it when the VM is at rest; a new worker does it once at first). */
  private refreshSnapshots(): void {
    for (const w of this.router.all()) {
      if (w.record?.parsed.ok && w.record.parsed.value.host === this.name) w.refreshSnapshots();
    }
  }

  /** Retries a retryable failure with backoff until the agent stops (retry.ts). */
  private retryUntilDone(what: string, fn: () => Promise<void>): Promise<void> {
    return retryUntilDone(what, fn, { stopped: () => this.stopped, logger: this.log });
  }
}
