/**
 * The agent's collector (docs/metrics.md): what each VM and the host use,
 * for the Prometheus endpoint, the per-host summary in etcd and accounting.
 *
 * Overview of responsibilities
 *  - every process_check_interval (chunter's zonemon_interval, 1 s): one
 *    /proc read per VM (Hypervisor.processUsage) to keep each VM's CPU
 *    seconds fresh, and a touch of the heartbeat file;
 *  - every vm_stats_interval (update_services_interval, 10 s): a full sample
 *    per VM (Hypervisor.sample: /proc, block stats over the VM's one QMP
 *    connection, tap counters), rates against the previous sample, the load
 *    average, and the summary `P/stats/<host>` in one put;
 *  - every storage_interval (zpool_interval, 15 s): statfs and a write probe
 *    of the state dir's filesystem, with the storage alarm events;
 *  - every memory_interval (arc_interval, 30 s): /proc/meminfo.
 *
 * Theory of operation
 *  Cost stays flat per VM: no process is spawned, no connection opened; a
 *  scrape of /metrics reads what is held here. Dead qemu processes are not
 *  this class's business: the hypervisor reports every exit at once (a
 *  child's exit event; for an adopted qemu its QMP socket closing, with a
 *  500 ms /proc poll behind it). The process check makes sure that when an
 *  exit comes, the VM's CPU seconds are at most one check old, and
 *  `lastUsage` / `onFinished` hand them, with the start and end times, to
 *  accounting. Every task reschedules itself after it finishes, so a slow
 *  one (a qemu that does not answer QMP) never piles up.
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { MAX_VMS_PER_SUMMARY, type HostStats, type VmStats } from '../contract/host-stats.js';
import type { EventCode, EventLevel } from '../contract/event.js';
import type { Hypervisor, VmExit, VmProcessUsage } from '../hypervisor/hypervisor.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { touchHeartbeat } from './heartbeat-file.js';
import { checkStorage, readHostMemory, stepStorageAlarm, type HostMemory, type HostStorage, type StorageAlarmState } from './host-readings.js';
import { createAgentMetrics, type AgentMetrics, type CollectTask, type VmView } from './metrics.js';
import { vmStatsFrom, type VmInfo } from './vm-stats.js';
import type { VmSample } from '../hypervisor/hypervisor.js';

export interface CollectorSettings {
  vm_stats_interval: number;
  process_check_interval: number;
  storage_interval: number;
  memory_interval: number;
  storage_free_alarm: number;
}

export interface CollectorDeps {
  host: string;
  /** The state dir: its filesystem is checked, the heartbeat file lives in it. */
  stateDir: string;
  cpus: number;
  hypervisor: Hypervisor;
  /** Read at every tick, so a reloaded config applies at the next one. */
  settings: () => CollectorSettings;
  /** The VMs the agent knows (from their records); those the hypervisor runs are measured. */
  vms: () => Iterable<VmInfo>;
  /** Stores the summary (the agent: one put of P/stats/<host> under its lease). */
  writeSummary: (stats: HostStats) => Promise<void>;
  report: (r: { level: EventLevel; event: EventCode; message: string; email?: boolean }) => Promise<void>;
  logger: Logger;
}

/**
 * What a VM's process used, for accounting: while it runs, and after it
 * ended (kept for the last 1000 ended processes).
 */
export interface VmUsage {
  uuid: string;
  name: string;
  vcpus: number;
  /** MiB, from the spec. */
  memory: number;
  pid: number;
  /** ISO time the process started. */
  startedAt: string;
  /** ISO time the process ended (the hypervisor's exit report); null while it runs. */
  endedAt: string | null;
  /** User + system CPU seconds of the process. */
  cpuSeconds: number;
  /** ISO time cpuSeconds was read: at most one process_check_interval before endedAt. */
  cpuSecondsAt: string;
}

const KEEP_FINISHED = 1000;

interface Held {
  info: VmInfo;
  sample: VmSample;
  stats: VmStats;
}

export class Collector {
  readonly metrics: AgentMetrics;
  private readonly held = new Map<string, Held>();
  private readonly running = new Map<string, VmUsage>();
  private readonly finished = new Map<string, VmUsage>();
  private readonly finishListeners = new Set<(usage: VmUsage) => void>();
  private memory: HostMemory | null = null;
  private storage: HostStorage | null = null;
  private load: [number, number, number] = [0, 0, 0];
  private storageAlarm: StorageAlarmState = 'ok';
  private heartbeatFailing = false;
  private timers = new Map<CollectTask, NodeJS.Timeout>();
  private stopped = true;
  private readonly unsubscribeExit: () => void;

  /** Subscribes to VM exits at once: construct it before anything else listens, so usage is final when they hear of an exit. */
  constructor(private readonly deps: CollectorDeps) {
    this.unsubscribeExit = deps.hypervisor.onExit((exit) => this.onExit(exit));
    this.metrics = createAgentMetrics({
      host: deps.host,
      vms: () => this.views(),
      hostStats: () => (this.memory && this.storage ? { load: this.load, cpus: this.deps.cpus, memory: this.memory, storage: this.storage } : null),
    });
  }

  /** Takes the first host readings, then runs every task on its interval. */
  async start(): Promise<void> {
    this.stopped = false;
    await Promise.all([this.run('memory'), this.run('storage'), this.run('process_check')]);
    await this.run('vm_stats');
    for (const task of ['memory', 'storage', 'process_check', 'vm_stats'] as const) this.schedule(task);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.unsubscribeExit();
  }

  /**
   * What VM `uuid`'s process used: the running one, else the last one that
   * ended (with `endedAt`), else undefined.
   */
  lastUsage(uuid: string): VmUsage | undefined {
    const u = this.running.get(uuid) ?? this.finished.get(uuid);
    return u ? { ...u } : undefined;
  }

  /** Called once for every VM process that ends, with its final usage; returns the unsubscribe function. */
  onFinished(listener: (usage: VmUsage) => void): () => void {
    this.finishListeners.add(listener);
    return () => this.finishListeners.delete(listener);
  }

  /** The newest summary's VM lines (what /metrics shows), for tests and `drover up`. */
  vmStats(): VmStats[] {
    return [...this.held.values()].map((h) => h.stats);
  }

  private *views(): Iterable<VmView> {
    for (const h of this.held.values()) yield { stats: h.stats, hasDisk: h.sample.disk !== null };
  }

  private schedule(task: CollectTask): void {
    if (this.stopped) return;
    const s = this.deps.settings();
    const seconds = { vm_stats: s.vm_stats_interval, process_check: s.process_check_interval, storage: s.storage_interval, memory: s.memory_interval }[task];
    const t = setTimeout(() => void this.run(task).finally(() => this.schedule(task)), seconds * 1000);
    t.unref();
    this.timers.set(task, t);
  }

  private async run(task: CollectTask): Promise<void> {
    const began = performance.now();
    try {
      switch (task) {
        case 'process_check':
          await this.checkProcesses();
          break;
        case 'vm_stats':
          await this.collectVmStats();
          break;
        case 'storage':
          await this.checkStorage();
          break;
        case 'memory':
          this.memory = await readHostMemory();
          break;
      }
    } catch (err) {
      this.deps.logger.warn({ task, err: errorMessage(err) }, 'collection task failed; trying again at its next interval');
    }
    this.metrics.observeCollect(task, (performance.now() - began) / 1000);
  }

  private async checkProcesses(): Promise<void> {
    await Promise.all(
      [...this.deps.vms()].map(async (info) => {
        const usage = await this.deps.hypervisor.processUsage(info.uuid).catch(() => null);
        if (usage) this.noteUsage(info, usage);
      }),
    );
    try {
      await touchHeartbeat(this.deps.stateDir);
      if (this.heartbeatFailing) this.deps.logger.info('the heartbeat file is written again');
      this.heartbeatFailing = false;
    } catch (err) {
      if (!this.heartbeatFailing) this.deps.logger.error({ err: errorMessage(err) }, 'cannot write the heartbeat file');
      this.heartbeatFailing = true;
    }
  }

  private noteUsage(info: VmInfo, u: VmProcessUsage): void {
    this.running.set(info.uuid, {
      uuid: info.uuid,
      name: info.name,
      vcpus: info.vcpus,
      memory: info.memory,
      pid: u.pid,
      startedAt: u.startedAt,
      endedAt: null,
      cpuSeconds: u.cpuSeconds,
      cpuSecondsAt: new Date(u.at).toISOString(),
    });
  }

  private onExit(exit: VmExit): void {
    this.held.delete(exit.uuid);
    const usage = this.running.get(exit.uuid);
    if (!usage) return;
    this.running.delete(exit.uuid);
    const ended: VmUsage = { ...usage, endedAt: exit.at.toISOString() };
    this.finished.delete(exit.uuid);
    this.finished.set(exit.uuid, ended);
    if (this.finished.size > KEEP_FINISHED) this.finished.delete(this.finished.keys().next().value as string);
    for (const listener of [...this.finishListeners]) {
      try {
        listener({ ...ended });
      } catch (err) {
        this.deps.logger.error({ err: errorMessage(err), vm: exit.uuid }, 'a usage listener threw');
      }
    }
  }

  private async collectVmStats(): Promise<void> {
    const seen = new Set<string>();
    await Promise.all(
      [...this.deps.vms()].map(async (info) => {
        let sample: VmSample | null;
        try {
          sample = await this.deps.hypervisor.sample(info.uuid);
        } catch (err) {
          this.deps.logger.debug({ vm: info.uuid, err: errorMessage(err) }, 'could not sample the VM');
          sample = null;
        }
        if (!sample) return;
        seen.add(info.uuid);
        const prev = this.held.get(info.uuid)?.sample ?? null;
        this.held.set(info.uuid, { info, sample, stats: vmStatsFrom(info, sample, prev) });
        this.noteUsage(info, sample);
      }),
    );
    for (const uuid of this.held.keys()) if (!seen.has(uuid)) this.held.delete(uuid);
    const [l1 = 0, l5 = 0, l15 = 0] = loadavg();
    this.load = [l1, l5, l15];
    if (!this.memory || !this.storage) return; // the first readings failed; logged by their tasks
    const vms = this.vmStats().sort((a, b) => a.name.localeCompare(b.name));
    const summary: HostStats = {
      host: this.deps.host,
      at: new Date().toISOString(),
      interval: this.deps.settings().vm_stats_interval,
      load: this.load,
      cpus: this.deps.cpus,
      memory: this.memory,
      storage: this.storage,
      vms: vms.slice(0, MAX_VMS_PER_SUMMARY),
      ...(vms.length > MAX_VMS_PER_SUMMARY ? { truncated: true } : {}),
    };
    await this.deps.writeSummary(summary);
  }

  private async checkStorage(): Promise<void> {
    const storage = await checkStorage(this.deps.stateDir);
    this.storage = storage;
    const step = stepStorageAlarm(this.storageAlarm, storage, this.deps.settings().storage_free_alarm, this.deps.host);
    this.storageAlarm = step.state;
    if (step.event) {
      await this.deps.report({ level: step.event.level, event: step.event.code, message: step.event.message, email: step.event.level !== 'info' });
    }
  }
}
