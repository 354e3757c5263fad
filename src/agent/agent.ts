/**
 * The drover agent: one per hypervisor host.
 *
 * Overview of responsibilities
 *  - claim the host's name and keep its liveness lease (HostRegistration);
 *  - adopt the VMs a previous agent left running (Hypervisor.recover), never
 *    restarting them;
 *  - list then watch `P/vm/` from the listed revision, so no change is
 *    missed, and hand each record designated to this host to its VmWorker;
 *  - pass process exits from the hypervisor to the VM's worker;
 *  - every resync_interval (and on SIGHUP, and after etcd comes back):
 *    re-read the config, re-offer every record (catches missed changes and
 *    VMs that should run but do not), report foreign qemu processes, prune
 *    old events;
 *  - heartbeat the host record;
 *  - measure every VM and the host (the Collector, docs/metrics.md): the
 *    Prometheus endpoint on metrics_listen, the summary P/stats/<name> under
 *    the liveness lease, the heartbeat file, the storage alarm.
 *
 * Theory of operation
 *  The decision of what to do for a VM is planVm, a pure function; this
 *  class only routes inputs to workers. etcd being away never stops a VM:
 *  workers back off and retry, the watch reconnects by itself and a resync
 *  follows, and a lost lease is claimed again.
 */
import type { Etcd3 } from 'etcd3';
import { keySpace, type KeySpace } from '../contract/keys.js';
import { applyReload, type AgentConfig } from '../config/agent-config.js';
import { DroverError, errorMessage, isTerminal } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor, VmExit } from '../hypervisor/hypervisor.js';
import { EventLog } from '../store/event-log.js';
import { KvStore, type WatchEvent, type WatchHandle } from '../store/kv-store.js';
import { toStoredVm, VmRepository, type StoredVm } from '../store/vm-repository.js';
import { CrashTracker } from './crash-tracker.js';
import { EventReporter } from './event-reporter.js';
import { ForeignCheck } from './foreign-check.js';
import { Fencing } from './fencing.js';
import { detectIp, hostCpus, hostMemoryMiB } from './host-facts.js';
import { designatedUsage, HostRegistration } from './host-registration.js';
import { createNotifier, type Notifier } from './notifier.js';
import { designatedHostOfRaw, isDesignatedTo, type PlanLimits } from './plan-vm.js';
import { snapshotDiskSpec } from './snapshot-disks.js';
import type { StateDir } from './state-dir.js';
import { VmWorker } from './vm-worker.js';
import { BackupRunner } from './backup-runner.js';
import { startConfiguredConsoleServer, type ConsoleServer } from './console-server.js';
import { AuthRepository } from '../store/auth-repository.js';
import { createAgentDiskPreparer } from '../storage/agent-disks.js';
import type { DiskPreparer } from '../storage/prepare-disks.js';
import { s3CredentialsFrom } from '../storage/s3/location.js';
import { Collector, type VmUsage } from '../observability/collector.js';
import { Accounting, finishedVmUsage } from '../observability/accounting/accounting.js';
import { PoolRepository } from '../store/pool-repository.js';
import { parseListen, startMetricsServer, type MetricsServer } from '../observability/metrics-server.js';
import type { VmInfo } from '../observability/vm-stats.js';

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

/** Config keys that only take effect after a restart. */
export class Agent {
  private config: AgentConfig;
  private readonly keys: KeySpace;
  private readonly kv: KvStore;
  private readonly repo: VmRepository;
  private readonly events: EventLog;
  private readonly registration: HostRegistration;
  private readonly crashes: CrashTracker;
  /** Image disks into overlay files before a start (docs/storage.md). */
  private readonly disks: DiskPreparer;
  private readonly workers = new Map<string, VmWorker>();
  /** Backups and restores asked through `backup_request` (docs/backups.md). */
  private readonly backups: BackupRunner;
  private readonly fencing: Fencing;
  private readonly foreign: ForeignCheck;
  private notifier: Notifier;
  private reporter: EventReporter;
  private watch: WatchHandle | null = null;
  private timers: NodeJS.Timeout[] = [];
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private snapshotTimer: NodeJS.Timeout | null = null;
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
      vms: () => this.measuredVms(),
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
    this.collector.onFinished((usage) => void this.account(usage));
    this.events = new EventLog(this.kv, this.keys);
    this.crashes = new CrashTracker(() => this.config.crash_window * 1000);
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
    this.fencing = new Fencing({ ...shared, registration: this.registration, workers: () => this.workers.values(), leaseTtlSeconds: () => this.config.lease_ttl });
    this.foreign = new ForeignCheck({ ...shared, worker: (uuid) => this.workers.get(uuid), config: () => this.config });
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * Claims the host name (retrying while etcd is away; a name held by another
   * live host is fatal), adopts running VMs, then starts watching.
   */
  async start(): Promise<void> {
    this.unsubscribeExit = this.deps.hypervisor.onExit((exit) => this.onExit(exit));
    await this.adoptRunningVms();
    await this.retryUntilDone('claim the host name', () => this.registration.claim());
    this.registration.on('lost', () => void this.reclaim());
    await this.retryUntilDone('list and watch VMs', () => this.listAndWatch());
    this.consoleServer = await startConfiguredConsoleServer(this.config.console_listen, this.registration.ip, { host: this.name, stateDir: this.deps.stateDir.root, auth: new AuthRepository(this.kv, this.keys), vms: this.repo, logger: this.log });
    await this.heartbeat();
    await this.startMetrics();
    // Not awaited: a qemu slow to answer QMP must not hold up the agent's start.
    void this.collector.start();
    await this.reporter.report({ level: 'info', event: 'host.up', message: `Agent ${this.name} is up (hostid ${this.deps.stateDir.hostid}, accel ${this.deps.hypervisor.accel}).` });
    this.every(() => this.config.heartbeat_interval, () => this.heartbeat());
    // One round at a time: under load a round (a file write) can take longer than 250 ms.
    let fencing = false;
    const fenceTimer = setInterval(() => {
      if (fencing) return;
      fencing = true;
      void (this.stopped ? Promise.resolve() : this.fencing.check()).finally(() => (fencing = false));
    }, 250);
    fenceTimer.unref();
    this.timers.push(fenceTimer);
    this.scheduleResync();
    this.scheduleSnapshotRefresh();
  }

  /**
   * What VM `uuid`'s qemu process used (start, end, CPU seconds), for
   * accounting: call it from an exit listener, or use
   * `collector.onFinished` (docs/metrics.md, "Usage for accounting").
   */
  lastUsage(uuid: string): VmUsage | undefined {
    return this.collector.lastUsage(uuid);
  }

  /**
   * A VM's qemu process ended: one APEL record of the run, unless it was
   * shorter than fizzle_seconds (its pool's, when it has one). The worker
   * still holds the record the VM ran with: the collector hears of the exit
   * before the worker does.
   */
  private async account(usage: VmUsage): Promise<void> {
    const rec = this.workers.get(usage.uuid)?.record;
    if (!rec?.parsed.ok || usage.endedAt === null) {
      this.log.warn({ vm: usage.uuid }, `No accounting record for VM ${usage.uuid}: the agent holds no valid record of it.`);
      return;
    }
    const vm = rec.parsed.value;
    let poolFizzle: number | undefined;
    if (vm.pool) {
      const pool = await this.pools.get(vm.pool).catch((err: unknown) => {
        this.log.warn({ vm: usage.uuid, pool: vm.pool, err: errorMessage(err) }, "could not read the VM's pool; accounting uses the agent's fizzle_seconds");
        return null;
      });
      if (pool?.parsed.ok) poolFizzle = pool.parsed.value.fizzle_seconds;
    }
    await this.accounting.vmFinished(finishedVmUsage(vm, { startedAt: usage.startedAt, endedAt: usage.endedAt, cpuSeconds: usage.cpuSeconds }, poolFizzle));
  }

  /** Where the Prometheus endpoint listens (HOST:PORT), or null when it is off. */
  get metricsAddress(): string | null {
    return this.metricsServer?.address ?? null;
  }

  /** Stops the agent, leaving every VM running (they are adopted on the next start). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.collector.stop();
    await this.metricsServer?.close();
    await this.consoleServer?.close();
    for (const t of this.timers) clearInterval(t);
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    if (this.snapshotTimer) clearTimeout(this.snapshotTimer);
    // etcd may be unreachable: do not let a hanging cancel keep the agent alive.
    await Promise.race([this.watch?.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.watch = null;
    this.unsubscribeExit?.();
    for (const w of this.workers.values()) w.close();
    await this.deps.hypervisor.detachAll();
    this.registration.release();
    this.notifier.close();
  }

  /** Resolves once every worker is idle (for tests and orderly shutdown). */
  async whenIdle(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.whenIdle()));
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
    const designated = new Set<string>();
    for (const vm of vms) {
      if (vm.parsed.ok && vm.parsed.value.host === this.name) designated.add(vm.uuid);
      this.route(vm, vm.modRevision);
    }
    await this.foreign.run(designated);
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

  private async adoptRunningVms(): Promise<void> {
    const saved = await this.deps.hypervisor.listSaved();
    for (const uuid of saved) {
      try {
        const handle = await this.deps.hypervisor.recover(uuid);
        if (handle) this.log.info({ vm: uuid, pid: handle.pid }, 'adopted running VM');
        else this.log.info({ vm: uuid }, 'saved VM is not running');
      } catch (err) {
        this.log.warn({ vm: uuid, err: errorMessage(err) }, 'could not adopt VM');
      }
    }
  }

  private async listAndWatch(): Promise<void> {
    await this.watch?.close();
    this.watch = null;
    const { vms, revision } = await this.repo.list();
    for (const vm of vms) this.route(vm, vm.modRevision);
    this.watch = await this.kv.watchPrefix(this.keys.vmPrefix, String(BigInt(revision) + 1n), {
      onEvent: (e) => this.onWatchEvent(e),
      onBroken: (why) => {
        this.log.warn({ why }, 'VM watch broke; listing again');
        void this.retryUntilDone('list and watch VMs', () => this.listAndWatch());
      },
      onDisconnected: (why) => this.log.warn({ why }, 'lost the etcd watch; VMs keep running'),
      onReconnected: () => {
        this.log.info('etcd watch is back');
        void this.resync('etcd reconnected').catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'resync failed'));
      },
    });
  }

  private onWatchEvent(e: WatchEvent): void {
    if (e.type === 'put') {
      this.route(toStoredVm(e.entry, this.keys), e.entry.modRevision);
    } else {
      const uuid = this.keys.idOf(e.key, this.keys.vmPrefix);
      this.workers.get(uuid)?.offer(null, e.modRevision);
    }
  }

  /**
   * Hands a record to its worker when it is this host's to act on: designated
   * here, invalid with no host to tell (unreadable JSON, or an empty `host`,
   * which the scheduler never places because it skips invalid records; CAS
   * makes the race between agents to mark it ERROR safe), or a VM this host runs.
   */
  private route(vm: StoredVm, revision: string): void {
    const existing = this.workers.get(vm.uuid);
    const ours =
      isDesignatedTo(vm, this.name) ||
      (vm.parsed.ok && vm.parsed.value.migration?.target === this.name) ||
      (!vm.parsed.ok && !designatedHostOfRaw(vm.raw)) ||
      this.deps.hypervisor.inspect(vm.uuid).state !== 'absent';
    if (ours || existing) this.worker(vm.uuid).offer(vm, revision);
    if (isDesignatedTo(vm, this.name)) this.backups.offer(vm);
  }

  private worker(uuid: string): VmWorker {
    let w = this.workers.get(uuid);
    if (!w) {
      w = new VmWorker(uuid, {
        host: this.name,
        hypervisor: this.deps.hypervisor,
        repo: this.repo,
        reporter: this.reporter,
        crashes: this.crashes,
        limits: () => this.limits(),
        logger: this.log,
        now: () => new Date(),
        sharedStorage: () => this.config.shared_storage,
        prepareDisks: (uuid, spec) => this.disks.prepare(uuid, spec),
        snapshotDisks: (uuid, spec) => snapshotDiskSpec(this.deps.stateDir.vmsDir, uuid, spec),
        migration: () => ({
          listenHost: this.config.migration_address ?? this.config.ip ?? detectIp(),
          prepareTimeoutMs: this.config.migration_prepare_timeout * 1000,
          timeoutMs: this.config.migration_timeout * 1000,
        }),
        assertMayStart: () => {
          if (!this.registration.fresh()) {
            throw new DroverError('ETCD_UNAVAILABLE', `Host ${this.name} has no fresh lease in etcd, so it starts no VM until the lease is renewed.`, true);
          }
        },
      });
      this.workers.set(uuid, w);
    }
    return w;
  }

  /** The VMs this host runs, with what their records say (name, vCPUs, memory), for the collector. */
  private *measuredVms(): Iterable<VmInfo> {
    for (const w of this.workers.values()) {
      const rec = w.record;
      if (!rec?.parsed.ok || this.deps.hypervisor.inspect(w.uuid).state === 'absent') continue;
      const { name, spec } = rec.parsed.value;
      yield { uuid: w.uuid, name, vcpus: spec.vcpus, memory: spec.memory };
    }
  }

  /**
   * Serves /metrics on metrics_listen. A port that is taken is logged and
   * the agent runs on without the endpoint: VMs matter more than metrics.
   */
  private async startMetrics(): Promise<void> {
    const listen = parseListen(this.config.metrics_listen);
    if (!listen) {
      this.log.info('metrics endpoint off (metrics_listen = "off")');
      return;
    }
    try {
      this.metricsServer = await startMetricsServer(listen, this.collector.metrics.registry);
      this.log.info({ metrics: this.metricsServer.address }, `metrics endpoint listening on http://${this.metricsServer.address}/metrics`);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'the metrics endpoint is off; the agent runs on without it');
    }
  }

  private limits(): PlanLimits {
    const c = this.config;
    return {
      crashLimit: c.crash_limit,
      crashWindowSeconds: c.crash_window,
      stopTimeoutMs: c.stop_timeout * 1000,
      backoffMinMs: c.restart_backoff_min * 1000,
      backoffMaxMs: c.restart_backoff_max * 1000,
    };
  }

  private onExit(exit: VmExit): void {
    this.log.info({ vm: exit.uuid, reason: exit.reason, detail: exit.detail }, 'VM process ended');
    if (this.fencing.takeFenced(exit.uuid)) {
      // Fenced, not stopped: once the lease is back the record decides (still
      // ours and RUNNING: start it again; failed over: leave it).
      this.worker(exit.uuid).kick();
      return;
    }
    this.worker(exit.uuid).exited(exit);
  }

  private async heartbeat(): Promise<void> {
    const { vmMemory, vms } = designatedUsage([...this.workers.values()].map((w) => w.record), this.name);
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

  private scheduleResync(): void {
    if (this.stopped) return;
    this.resyncTimer = setTimeout(() => {
      void this.resync('periodic check')
        .catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'resync failed; VMs keep running'))
        .finally(() => this.scheduleResync());
    }, this.config.resync_interval * 1000);
    this.resyncTimer.unref();
  }

  /**
   * Every snapshot_update_interval, each VM designated here re-reads its
   * disks' snapshots into its record (its worker does it when the VM is at
   * rest; a new worker does it once at first).
   */
  private scheduleSnapshotRefresh(): void {
    if (this.stopped) return;
    this.snapshotTimer = setTimeout(() => {
      for (const w of this.workers.values()) {
        if (w.record?.parsed.ok && w.record.parsed.value.host === this.name) w.refreshSnapshots();
      }
      this.scheduleSnapshotRefresh();
    }, this.config.snapshot_update_interval * 1000);
    this.snapshotTimer.unref();
  }

  private every(seconds: () => number, fn: () => Promise<void>): void {
    const tick = (): void => {
      if (this.stopped) return;
      const t = setTimeout(() => void fn().finally(tick), seconds() * 1000);
      t.unref();
      this.heartbeatTimer = t;
    };
    tick();
  }

  /** Retries a retryable failure with backoff (500 ms doubling to 10 s); rethrows terminal ones. */
  private async retryUntilDone(what: string, fn: () => Promise<void>): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await fn();
        return;
      } catch (err) {
        if (isTerminal(err)) throw err;
        const delay = Math.min(10_000, 500 * 2 ** attempt);
        this.log.warn({ err: errorMessage(err), retryInMs: delay }, `could not ${what}; retrying`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    throw new DroverError('ETCD_UNAVAILABLE', `Agent stopped before it could ${what}.`, true);
  }
}
