/**
 * The agent's Prometheus metrics (docs/metrics.md documents every one), on
 * their own prom-client Registry.
 *
 * Theory of operation: nothing is updated as samples come in. Each metric
 * has a `collect` hook that, at scrape time, resets it and fills it from
 * the collector's newest samples, so a VM that is gone loses its series at
 * the next scrape and a scrape costs the same whatever the intervals are.
 * VM counters are qemu's own totals (CPU, block, tap), so they are exported
 * as Prometheus counters with the values as read, never accumulated here.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HostStats, VmStats } from '../contract/host-stats.js';

/** One VM as the newest stats interval saw it. */
export interface VmView {
  stats: VmStats;
  /** False when the VM's block stats could not be read (no QMP connection): no disk series. */
  hasDisk: boolean;
}

export interface MetricsSource {
  readonly host: string;
  vms(): Iterable<VmView>;
  /** The newest host figures, or null before the first reading. */
  hostStats(): Pick<HostStats, 'load' | 'cpus' | 'memory' | 'storage'> | null;
}

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDef {
  name: string;
  type: MetricType;
  help: string;
  labels: readonly string[];
}

const VM_LABELS = ['vm', 'name', 'host'] as const;
const HOST_LABELS = ['host'] as const;

type VmValue = (v: VmView) => number | null;
type HostValue = (h: NonNullable<ReturnType<MetricsSource['hostStats']>>) => number;

const disk = (f: (s: VmStats) => number): VmValue => (v) => (v.hasDisk ? f(v.stats) : null);

/** VM metrics: name, type, help, value (null: no series for that VM). */
const VM_METRICS: ReadonlyArray<[string, 'counter' | 'gauge', string, VmValue]> = [
  ['drover_vm_cpu_seconds_total', 'counter', 'User plus system CPU seconds of the VM\'s qemu process since it started (/proc/PID/stat).', (v) => v.stats.cpu_seconds],
  ['drover_vm_cpu_load', 'gauge', 'CPU seconds per second over the last stats interval; 1 is one vCPU busy.', (v) => v.stats.cpu_load],
  ['drover_vm_vcpus', 'gauge', 'vCPUs in the VM\'s spec.', (v) => v.stats.vcpus],
  ['drover_vm_memory_bytes', 'gauge', 'Guest memory in the VM\'s spec.', (v) => v.stats.memory * 1024 * 1024],
  ['drover_vm_rss_bytes', 'gauge', 'Resident memory of the VM\'s qemu process (/proc/PID/status VmRSS).', (v) => v.stats.rss_bytes],
  ['drover_vm_start_time_seconds', 'gauge', 'Unix time the VM\'s qemu process started.', (v) => Date.parse(v.stats.started_at) / 1000],
  ['drover_vm_wall_seconds', 'gauge', 'Seconds since the VM\'s qemu process started.', (v) => v.stats.wall_seconds],
  ['drover_vm_uptime_seconds', 'gauge', 'Seconds since the guest last booted (process start or last reset).', (v) => v.stats.uptime_seconds],
  ['drover_vm_disk_read_bytes_total', 'counter', 'Bytes read from all the VM\'s disks (QMP query-blockstats).', disk((s) => s.disk_read_bytes)],
  ['drover_vm_disk_write_bytes_total', 'counter', 'Bytes written to all the VM\'s disks (QMP query-blockstats).', disk((s) => s.disk_write_bytes)],
  ['drover_vm_disk_read_ops_total', 'counter', 'Read operations on all the VM\'s disks (QMP query-blockstats).', disk((s) => s.disk_read_ops)],
  ['drover_vm_disk_write_ops_total', 'counter', 'Write operations on all the VM\'s disks (QMP query-blockstats).', disk((s) => s.disk_write_ops)],
  ['drover_vm_network_receive_bytes_total', 'counter', 'Bytes the guest received on its bridge NICs (host tap tx counters).', (v) => v.stats.net_rx_bytes],
  ['drover_vm_network_transmit_bytes_total', 'counter', 'Bytes the guest sent on its bridge NICs (host tap rx counters).', (v) => v.stats.net_tx_bytes],
  ['drover_vm_network_receive_packets_total', 'counter', 'Packets the guest received on its bridge NICs (host tap tx counters).', (v) => v.stats.net_rx_packets],
  ['drover_vm_network_transmit_packets_total', 'counter', 'Packets the guest sent on its bridge NICs (host tap rx counters).', (v) => v.stats.net_tx_packets],
  ['drover_vm_balloon_bytes', 'gauge', 'Guest memory as the VM\'s balloon device reports it (QMP query-balloon).', (v) => v.stats.balloon_bytes],
];

const HOST_METRICS: ReadonlyArray<[string, string, HostValue]> = [
  ['drover_host_load1', '1-minute load average of the host.', (h) => h.load[0]],
  ['drover_host_load5', '5-minute load average of the host.', (h) => h.load[1]],
  ['drover_host_load15', '15-minute load average of the host.', (h) => h.load[2]],
  ['drover_host_cpus', 'CPUs the host offers (available parallelism).', (h) => h.cpus],
  ['drover_host_memory_total_bytes', 'Host memory (/proc/meminfo MemTotal).', (h) => h.memory.total_bytes],
  ['drover_host_memory_available_bytes', 'Host memory available without swapping (/proc/meminfo MemAvailable).', (h) => h.memory.available_bytes],
  ['drover_host_memory_page_cache_bytes', 'Host page cache (/proc/meminfo Cached).', (h) => h.memory.page_cache_bytes],
  ['drover_host_storage_total_bytes', 'Size of the filesystem holding the agent\'s state dir (statfs).', (h) => h.storage.total_bytes],
  ['drover_host_storage_free_bytes', 'Free space an unprivileged writer may use on the state dir\'s filesystem (statfs bavail).', (h) => h.storage.free_bytes],
  ['drover_host_storage_ok', '1 when the state dir\'s filesystem answers statfs and takes a small fsynced write, else 0.', (h) => (h.storage.ok ? 1 : 0)],
];

/** Every metric drover defines itself (prom-client's default ones, prefixed drover_agent_, come on top). */
export const DROVER_METRICS: readonly MetricDef[] = [
  ...VM_METRICS.map(([name, type, help]) => ({ name, type, help, labels: VM_LABELS })),
  ...HOST_METRICS.map(([name, help]) => ({ name, type: 'gauge' as const, help, labels: HOST_LABELS })),
  { name: 'drover_host_vms', type: 'gauge', help: 'VMs whose qemu process runs on the host, as the last stats interval saw them.', labels: HOST_LABELS },
  { name: 'drover_agent_collect_seconds', type: 'histogram', help: 'Wall time the agent spent on one collection task (vm_stats, process_check, storage, memory).', labels: ['task'] },
];

/** The prefix of prom-client's default process and Node.js metrics. */
export const DEFAULT_METRICS_PREFIX = 'drover_agent_';

/**
 * prom-client's default metrics that break Prometheus' naming rules (gauges
 * named `_total`, which promtool rejects): left out.
 */
const NONCONFORMING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export type CollectTask = 'vm_stats' | 'process_check' | 'storage' | 'memory';

export interface AgentMetrics {
  readonly registry: Registry;
  /** Records how long a collection task took. */
  observeCollect(task: CollectTask, seconds: number): void;
}

export function createAgentMetrics(source: MetricsSource): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: DEFAULT_METRICS_PREFIX });
  for (const name of NONCONFORMING_DEFAULTS) registry.removeSingleMetric(DEFAULT_METRICS_PREFIX + name);
  const vmLabels = (s: VmStats): Record<(typeof VM_LABELS)[number], string> => ({ vm: s.uuid, name: s.name, host: source.host });

  for (const [name, type, help, value] of VM_METRICS) {
    const fill = (set: (labels: Record<string, string>, v: number) => void): void => {
      for (const view of source.vms()) {
        const v = value(view);
        if (v !== null) set(vmLabels(view.stats), v);
      }
    };
    if (type === 'counter') {
      new Counter({
        name, help, labelNames: VM_LABELS, registers: [registry],
        collect() {
          this.reset();
          fill((l, v) => this.inc(l, v));
        },
      });
    } else {
      new Gauge({
        name, help, labelNames: VM_LABELS, registers: [registry],
        collect() {
          this.reset();
          fill((l, v) => this.set(l, v));
        },
      });
    }
  }
  for (const [name, help, value] of HOST_METRICS) {
    new Gauge({
      name, help, labelNames: HOST_LABELS, registers: [registry],
      collect() {
        this.reset();
        const h = source.hostStats();
        if (h) this.set({ host: source.host }, value(h));
      },
    });
  }
  new Gauge({
    name: 'drover_host_vms', help: DROVER_METRICS.find((m) => m.name === 'drover_host_vms')!.help, labelNames: HOST_LABELS, registers: [registry],
    collect() {
      let n = 0;
      for (const _ of source.vms()) n++;
      this.set({ host: source.host }, n);
    },
  });
  const collectSeconds = new Histogram({
    name: 'drover_agent_collect_seconds',
    help: DROVER_METRICS.find((m) => m.name === 'drover_agent_collect_seconds')!.help,
    labelNames: ['task'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return {
    registry,
    observeCollect: (task, seconds) => collectSeconds.observe({ task }, seconds),
  };
}
