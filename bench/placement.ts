/**
 * Placement throughput benchmark (issue 3): how fast one leader-elected
 * Scheduler places VM records, next to what etcd itself allows one client,
 * in one run against a fresh real etcd (`node dist/bench/placement.js`
 * after `npx tsc -p .`; `--help` for the options).
 *
 *  (1) the floor: N keys are created, then N transactions with the
 *      scheduler's exact shape (`KvStore.putIfGuarded`: key's mod revision ==
 *      expected AND a guard key exists, then put a VM-record-sized value) are
 *      issued from ONE client with the scheduler's concurrency (64 in flight
 *      by default), then with 1 in flight; for context (what the
 *      scheduler's batches are made of, not the floor), the same puts 16 per
 *      transaction;
 *  (2) drover, pre-written: H host records and their alive keys (one lease)
 *      are written, NO agents: placement needs only those; then N VM records,
 *      status REQUESTED_NEW and no host, all BEFORE the scheduler starts; then
 *      one Scheduler is started in this process, and the time from start()
 *      to the last record seen SCHEDULED by an etcd watch (in a worker
 *      thread, with its own connection, so it takes nothing from the
 *      scheduler's event loop) gives placements/s. The scheduler's own
 *      `placed` counter is sampled too. The scheduler writes its decisions
 *      `--batch-size` (16) per transaction, `--concurrency` records in flight;
 *  (3) drover, streaming: a fresh prefix, the same hosts, a scheduler that
 *      already leads, and N records created by another client (a worker
 *      thread) with the same concurrency while it runs;
 *  (4) the scheduler's own CPU per decision without etcd: ClusterView.put,
 *      capacities() and placeVm() timed in this process on the same records.
 *
 * Each phase also reports the main thread's event-loop utilisation (the
 * scheduler's, or the floor client's), this process's and etcd's CPU, etcd's
 * Txn/Range/fsync counters (its /metrics), and the CPU other processes used
 * meanwhile: a phase marked NOT QUIET was disturbed and is not comparable.
 * `--cpu-prof DIR` adds a V8 profile of the main thread during (2) and (3).
 *
 * Targets (information only, the script exits 0 unless something broke):
 * placements/s of (2) at least half of the floor at the same concurrency, and
 * at least 2,000/s. docs/benchmarks.md records runs and reads them.
 * Everything started here (etcd, its temp dir, worker threads) is removed at
 * the end, also on error or Ctrl-C.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { keySpace, type KeySpace } from '../src/contract/keys.js';
import { EtcdProcess } from '../src/embedded/etcd-process.js';
import type { Logger } from '../src/lib/logger.js';
import { ClusterView } from '../src/scheduler/cluster-view.js';
import { placeVm, freeMemory, type HostCapacity } from '../src/scheduler/place-vm.js';
import { Scheduler } from '../src/scheduler/scheduler.js';
import { createEtcdClient } from '../src/store/etcd-client.js';
import { KvStore, type KvEntry } from '../src/store/kv-store.js';
import type { Etcd3 } from 'etcd3';
import { Cleanup } from './lib/cleanup.js';
import { summarizeProfile, ThreadProfiler, type CpuProfile } from './lib/cpu-profile.js';
import { now, type WatchJob, type WorkerMessage, type WriteJob } from './lib/etcd-worker.js';
import { clockTicksPerSecond, cpuTicks, machineInfo, pidsMentioning } from './lib/procfs.js';
import { benchOptions } from './lib/options.js';
import { ms, summarize, table } from './lib/stats.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORKER = new URL('./lib/etcd-worker.js', import.meta.url);
const VM_MEMORY = 1024;
const HOST_MEMORY = 65536;
const HOST_CPUS = 64;
const POLICY = { strategy: 'spread' as const, overheadMiB: 64, cpuOvercommit: 4 };

interface Options {
  hosts: number;
  vms: number;
  concurrency: number;
  /** The Scheduler's batchSize: records per placement transaction. */
  batchSize: number;
  serialOps: number;
  stream: boolean;
  timeoutS: number;
  json?: string;
  cpuProf?: string;
}

function readOptions(args: string[]): Options {
  const v = benchOptions(
    'node dist/bench/placement.js [--hosts 1000] [--vms 10000] [--concurrency 64] [--batch-size 16] [--serial-ops 2000]\n' +
      '                                   [--no-stream] [--timeout SECONDS] [--json FILE] [--cpu-prof DIR]\n' +
      '  --batch-size N  records per placement transaction of the scheduler (1: one transaction per placement)\n' +
      '  --cpu-prof DIR  V8 CPU profile of the main thread during (2) and (3) (slows them),\n' +
      '                  written to DIR/placement-{prewritten,streaming}.cpuprofile, with a summary printed',
    {
      hosts: { type: 'string' },
      vms: { type: 'string' },
      concurrency: { type: 'string' },
      'batch-size': { type: 'string' },
      'serial-ops': { type: 'string' },
      'no-stream': { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'string' },
      'cpu-prof': { type: 'string' },
    },
    args,
  );
  const int = (value: string | undefined, def: number): number => (value === undefined ? def : Math.max(1, Number.parseInt(value, 10)));
  return {
    hosts: int(v.hosts, 1000),
    vms: int(v.vms, 10_000),
    concurrency: int(v.concurrency, 64),
    batchSize: int(v['batch-size'], 16),
    serialOps: int(v['serial-ops'], 2000),
    stream: v['no-stream'] !== true,
    timeoutS: int(v.timeout, 600),
    ...(v.json !== undefined ? { json: v.json } : {}),
    ...(v['cpu-prof'] !== undefined ? { cpuProf: v['cpu-prof'] } : {}),
  };
}

const log = (line = ''): void => console.log(line);
const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));
const rate = (n: number, msec: number): string => `${Math.round((n / msec) * 1000).toLocaleString('en-US')}/s`;
const perSec = (n: number, msec: number): number => (n / msec) * 1000;

/** Runs fn(0..n-1) with `concurrency` in flight (lanes pulling the next index). */
async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) await fn(i);
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, lane));
}

/** Sums of a few of etcd's Prometheus counters (all label sets added up; Txn and Range by gRPC method). */
async function etcdCounters(endpoint: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const out: Record<string, number> = { txn: 0, range: 0, put: 0, walFsync: 0, backendCommit: 0 };
  for (const line of text.split('\n')) {
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith('grpc_server_handled_total{')) {
      if (line.includes('grpc_method="Txn"')) out.txn! += v;
      else if (line.includes('grpc_method="Range"')) out.range! += v;
      else if (line.includes('grpc_method="Put"')) out.put! += v;
    } else if (line.startsWith('etcd_disk_wal_fsync_duration_seconds_count')) out.walFsync! += v;
    else if (line.startsWith('etcd_disk_backend_commit_duration_seconds_count')) out.backendCommit! += v;
  }
  return out;
}

function delta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));
}

/** Busy (not idle, not iowait) and total jiffies of all CPUs together, from /proc/stat. */
async function cpuJiffies(): Promise<{ busy: number; total: number }> {
  const v = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
}

/** All CPUs' busy share over one second. */
async function busyNote(): Promise<{ busyPct: number; load1: number; text: string }> {
  const a = await cpuJiffies();
  await sleep(1000);
  const b = await cpuJiffies();
  const busyPct = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100;
  const load1 = Number((await readFile('/proc/loadavg', 'utf8').catch(() => 'NaN')).split(' ')[0]);
  return { busyPct, load1, text: `CPUs ${busyPct.toFixed(0)}% busy over 1 s, load average ${load1.toFixed(2)}` };
}

/** A worker thread running one job of bench/lib/etcd-worker.ts. */
class EtcdWorker {
  private readonly worker: Worker;
  private readonly inbox: WorkerMessage[] = [];
  private readonly waiters: Array<() => void> = [];
  private exited = false;

  constructor(job: WatchJob | WriteJob) {
    this.worker = new Worker(WORKER, { workerData: job });
    this.worker.on('message', (m: WorkerMessage) => {
      this.inbox.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    this.worker.on('error', (err) => {
      this.inbox.push({ type: 'error', message: err.stack ?? err.message });
      for (const w of this.waiters.splice(0)) w();
    });
    this.worker.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  send(m: string): void {
    this.worker.postMessage(m);
  }

  /** The next message of this type; an "error" message or the deadline throws. */
  async next<T extends WorkerMessage['type']>(type: T, timeoutMs: number, what: string): Promise<Extract<WorkerMessage, { type: T }>> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const err = this.inbox.find((m) => m.type === 'error');
      if (err && err.type === 'error') throw new Error(`${what}: ${err.message}`);
      const i = this.inbox.findIndex((m) => m.type === type);
      if (i >= 0) return this.inbox.splice(i, 1)[0] as Extract<WorkerMessage, { type: T }>;
      if (this.exited) throw new Error(`${what}: the worker exited`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${what}: timed out after ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    if (this.exited) return;
    this.send('close');
    await this.next('closed', 5000, 'closing a worker').catch(() => undefined);
    if (!this.exited) await this.worker.terminate();
  }
}

function hostRecord(name: string): string {
  return JSON.stringify({
    name, hostid: randomUUID(), ip: '127.0.0.1', status: 'ALIVE', cpus: HOST_CPUS, memory: HOST_MEMORY,
    reserved_memory: 0, free_memory: HOST_MEMORY, version: 'bench', heartbeat_at: new Date().toISOString(),
  });
}

function vmRecord(uuid: string, i: number): Record<string, unknown> {
  return { uuid, name: `p-${i}`, status: 'REQUESTED_NEW', spec: { vcpus: 1, memory: VM_MEMORY, boot: { kernel: '/k' } } };
}

const hostName = (i: number): string => `h${String(i).padStart(4, '0')}`;

async function writeHosts(kv: KvStore, keys: KeySpace, n: number, leaseId: string, concurrency: number): Promise<void> {
  await pool(n, concurrency, async (i) => {
    const name = hostName(i);
    await kv.put(keys.host(name), hostRecord(name));
    await kv.put(keys.alive(name), JSON.stringify({ hostid: 'bench', pid: 1, since: new Date().toISOString() }), leaseId);
  });
}

function vmEntries(keys: KeySpace, n: number): Array<{ key: string; raw: string }> {
  return Array.from({ length: n }, (_, i) => {
    const uuid = randomUUID();
    return { key: keys.vm(uuid), raw: JSON.stringify(vmRecord(uuid, i)) };
  });
}

/** Placements per wall-clock second from `t0`, for the timeline line. */
function perSecond(stamps: readonly number[], t0: number): number[] {
  const out: number[] = [];
  for (const s of stamps) {
    const b = Math.max(0, Math.floor((s - t0) / 1000));
    while (out.length <= b) out.push(0);
    out[b]!++;
  }
  return out;
}

interface Observed {
  /** What the scheduler's logger said: when it was elected, and its warnings. */
  electedAt: number;
  warnings: number;
  firstWarnings: string[];
}

function schedulerLogger(obs: Observed): Logger {
  return pino({ level: 'info' }, {
    write(line: string) {
      const at = now();
      try {
        const o = JSON.parse(line) as { msg?: string; level?: number };
        if (o.msg === 'elected scheduler leader' && Number.isNaN(obs.electedAt)) obs.electedAt = at;
        if ((o.level ?? 0) >= 40) {
          obs.warnings++;
          if (obs.firstWarnings.length < 5) obs.firstWarnings.push(line.trim());
        }
      } catch {
        // not JSON
      }
    },
  });
}

/** Checks the outcome in etcd: every record SCHEDULED on a known host, none over capacity. */
async function verify(kv: KvStore, keys: KeySpace, n: number, hosts: number): Promise<{ scheduled: number; minPerHost: number; maxPerHost: number; overCapacity: number }> {
  const { entries } = await kv.list(keys.vmPrefix);
  const perHost = new Map<string, number>();
  let scheduled = 0;
  for (const e of entries) {
    const r = JSON.parse(e.raw) as { status?: string; host?: string };
    if (r.status !== 'SCHEDULED' || !r.host) continue;
    scheduled++;
    perHost.set(r.host, (perHost.get(r.host) ?? 0) + 1);
  }
  const counts = Array.from({ length: hosts }, (_, i) => perHost.get(hostName(i)) ?? 0);
  const fit = Math.floor(HOST_MEMORY / (VM_MEMORY + POLICY.overheadMiB));
  if (entries.length !== n) throw new Error(`expected ${n} VM records under ${keys.vmPrefix}, found ${entries.length}`);
  return { scheduled, minPerHost: Math.min(...counts), maxPerHost: Math.max(...counts), overCapacity: counts.filter((c) => c > fit).length };
}

interface PhaseCost {
  wallMs: number;
  /** Main thread (the scheduler's event loop) busy share, 0..1. */
  elu: number;
  /** CPU of this whole process (all threads), ms. */
  processCpuMs: number;
  etcdCpuMs: number;
  /** CPU the rest of the machine used meanwhile (all CPUs busy, minus this process and etcd), ms. */
  othersCpuMs: number;
  etcd: Record<string, number>;
}

class CostMeter {
  private elu = performance.eventLoopUtilization();
  private cpu = process.cpuUsage();
  private etcdTicks = 0;
  private counters: Record<string, number> = {};
  private machineBusy = 0;
  private t0 = now();

  constructor(
    private readonly endpoint: string,
    private readonly etcdPid: number | undefined,
  ) {}

  async start(): Promise<void> {
    this.counters = await etcdCounters(this.endpoint);
    this.etcdTicks = this.etcdPid !== undefined ? ((await cpuTicks(this.etcdPid)) ?? 0) : 0;
    this.machineBusy = (await cpuJiffies()).busy;
    this.elu = performance.eventLoopUtilization();
    this.cpu = process.cpuUsage();
    this.t0 = now();
  }

  async stop(): Promise<PhaseCost> {
    const wallMs = now() - this.t0;
    const elu = performance.eventLoopUtilization(this.elu).utilization;
    const c = process.cpuUsage(this.cpu);
    const hz = await clockTicksPerSecond();
    const etcdTicks = this.etcdPid !== undefined ? ((await cpuTicks(this.etcdPid)) ?? 0) : 0;
    const machineMs = (((await cpuJiffies()).busy - this.machineBusy) / hz) * 1000;
    const processCpuMs = (c.user + c.system) / 1000;
    const etcdCpuMs = ((etcdTicks - this.etcdTicks) / hz) * 1000;
    return {
      wallMs,
      elu,
      processCpuMs,
      etcdCpuMs,
      othersCpuMs: Math.max(0, machineMs - processCpuMs - etcdCpuMs),
      etcd: delta(this.counters, await etcdCounters(this.endpoint)),
    };
  }
}

function costLine(c: PhaseCost, ops?: number): string {
  const e = c.etcd;
  const per = ops ? ` (${((c.elu * c.wallMs) / ops * 1000).toFixed(0)} us per ${ops === c.etcd.txn ? 'transaction' : 'record'})` : '';
  return `main-thread event loop ${(c.elu * 100).toFixed(0)}% busy${per}; this process ${(c.processCpuMs / c.wallMs * 100).toFixed(0)}% of a core (all threads), etcd ${(c.etcdCpuMs / c.wallMs * 100).toFixed(0)}%, ` +
    `other processes ${(c.othersCpuMs / c.wallMs * 100).toFixed(0)}%${c.othersCpuMs / c.wallMs > 0.15 ? ' (NOT QUIET: these figures are disturbed)' : ''}; ` +
    `etcd served ${e.txn} Txn, ${e.range} Range, ${e.walFsync} WAL fsyncs`;
}

interface FloorResult {
  ops: number;
  concurrency: number;
  ms: number;
  perSec: number;
  failed: number;
  cost: PhaseCost;
}

/** Transactions of the scheduler's shape on existing keys, from one client. */
async function floorRun(kv: KvStore, meter: CostMeter, prefix: string, ops: number, concurrency: number, value: string, guard: string): Promise<FloorResult> {
  const { entries } = await kv.list(prefix, { limit: ops });
  if (entries.length < ops) throw new Error(`floor: ${entries.length} keys under ${prefix}, wanted ${ops}`);
  let failed = 0;
  await meter.start();
  const t0 = now();
  await pool(ops, concurrency, async (i) => {
    const e = entries[i]!;
    if (!(await kv.putIfGuarded(e.key, value, e.modRevision, guard))) failed++;
  });
  const t = now() - t0;
  const cost = await meter.stop();
  return { ops, concurrency, ms: t, perSec: perSec(ops, t), failed, cost };
}

/**
 * Context for a fix, not the floor: the same CAS puts, `batch` of them in ONE
 * transaction (every record's mod-revision compare plus the guard, all or
 * nothing), `concurrency` transactions in flight.
 */
async function batchedFloorRun(client: Etcd3, kv: KvStore, meter: CostMeter, prefix: string, ops: number, batch: number, concurrency: number, value: string, guard: string): Promise<FloorResult & { batch: number }> {
  const { entries } = await kv.list(prefix, { limit: ops });
  const groups = Math.ceil(entries.length / batch);
  let failed = 0;
  await meter.start();
  const t0 = now();
  await pool(groups, concurrency, async (g) => {
    const group = entries.slice(g * batch, (g + 1) * batch);
    const txn = client.if(guard, 'Create', '>', 0);
    for (const e of group) txn.and(e.key, 'Mod', '==', e.modRevision);
    const res = await txn.then(...group.map((e) => client.put(e.key).value(value))).commit();
    if (!res.succeeded) failed += group.length;
  });
  const t = now() - t0;
  const cost = await meter.stop();
  return { ops: entries.length, concurrency, batch, ms: t, perSec: perSec(entries.length, t), failed, cost };
}

interface DecisionCost {
  /** ClusterView.put of one VM record (zod parse included): what each watch event costs. */
  viewPutUs: number;
  /** ClusterView.capacities() with H hosts. */
  capacitiesUs: number;
  /** capacities() + placeVm() + reserve(): one decision as Scheduler.pass makes it. */
  decisionUs: number;
  /** placeVm() alone on a prepared capacity array. */
  placeVmUs: number;
  /** For comparison: one pass over the same array picking the most free memory, no allocation, no sort. */
  argmaxUs: number;
}

/**
 * The scheduler's own CPU per placement without etcd: the same ClusterView
 * and placeVm the Scheduler uses, fed the same host and VM records.
 */
function decisionCost(keys: KeySpace, hosts: number, entries: Array<{ key: string; raw: string }>): DecisionCost {
  const view = new ClusterView(keys, POLICY.overheadMiB);
  let rev = 1;
  const entry = (key: string, raw: string): KvEntry => ({ key, raw, modRevision: String(rev++), createRevision: '1', lease: '0' });
  for (let i = 0; i < hosts; i++) {
    view.put(entry(keys.host(hostName(i)), hostRecord(hostName(i))));
    view.put(entry(keys.alive(hostName(i)), '{}'));
  }
  let t = performance.now();
  for (const e of entries) view.put(entry(e.key, e.raw));
  const viewPutUs = ((performance.now() - t) / entries.length) * 1000;
  const n = entries.length;
  t = performance.now();
  let sink = 0;
  for (let i = 0; i < n; i++) sink += view.capacities().length;
  const capacitiesUs = ((performance.now() - t) / n) * 1000;
  const caps = view.capacities();
  const req = { memory: VM_MEMORY, vcpus: 1 };
  t = performance.now();
  for (let i = 0; i < n; i++) {
    const p = placeVm(req, caps, POLICY);
    if (p.ok) sink += p.host.length;
  }
  const placeVmUs = ((performance.now() - t) / n) * 1000;
  t = performance.now();
  for (let i = 0; i < n; i++) {
    let best: HostCapacity | undefined;
    let bestFree = -Infinity;
    for (const h of caps) {
      const f = freeMemory(h);
      if (h.alive && !h.drained && f > bestFree) {
        best = h;
        bestFree = f;
      }
    }
    sink += best ? 1 : 0;
  }
  const argmaxUs = ((performance.now() - t) / n) * 1000;
  t = performance.now();
  for (const vm of view.vms.values()) {
    if (!vm.parsed.ok) continue;
    const p = placeVm(req, view.capacities(), POLICY);
    if (p.ok) view.reserve(vm.uuid, p.host, VM_MEMORY, 1);
  }
  const decisionUs = ((performance.now() - t) / n) * 1000;
  if (sink === 0) log('(no decisions?)');
  return { viewPutUs, capacitiesUs, decisionUs, placeVmUs, argmaxUs };
}

interface PlacementResult {
  variant: 'pre-written' | 'streaming';
  vms: number;
  hosts: number;
  /** From scheduler.start() (pre-written) or the first put (streaming). */
  t0: number;
  electedMs: number;
  leaderReadyMs: number;
  firstScheduledMs: number;
  allScheduledMs: number;
  placedCounterMs: number;
  perSecFromStart: number;
  perSecFromElected: number;
  perSecCounter: number;
  timeline: number[];
  scheduledPuts: number;
  repeats: number;
  warnings: number;
  firstWarnings: string[];
  cost: PhaseCost;
  check: Awaited<ReturnType<typeof verify>>;
  /** Streaming only. */
  writes?: { ms: number; perSec: number; failed: number; latency: ReturnType<typeof summarize> };
}

async function main(): Promise<void> {
  const opts = readOptions(process.argv.slice(2));
  const { hosts: H, vms: N, concurrency: C } = opts;
  const timeoutMs = opts.timeoutS * 1000;
  const cleanup = new Cleanup().onSignals();

  const root = await mkdtemp(join(tmpdir(), 'drover-bench-placement-'));
  cleanup.add('remove the temp dir', () => rm(root, { recursive: true, force: true }));
  try {
    const machine = await machineInfo('qemu-system-x86_64', REPO_ROOT);
    log('drover placement-throughput benchmark (issue 3)');
    log(table([
      ['machine', ''],
      ['CPU', machine.cpuModel],
      ['cores', String(machine.cores)],
      ['RAM', `${machine.ramMiB} MiB`],
      ['kernel', machine.kernel],
      ['etcd', machine.etcd],
      ['node', machine.node],
      ['drover', machine.drover],
    ]));
    const load = await busyNote();
    log(`[start: ${load.text}]`);
    if (load.busyPct > 15) log('[warning: the machine is busy with other work; the figures will be low and noisy]');
    log();

    const etcdData = join(root, 'etcd', 'data');
    const etcd = new EtcdProcess({ dataDir: etcdData, logFile: join(root, 'etcd.log') });
    cleanup.add('stop etcd', () => etcd.stop());
    await etcd.start();
    const etcdPid = (await pidsMentioning(/(^|\/)etcd$/, etcdData))[0];
    const setupClient = createEtcdClient([etcd.endpoint]);
    cleanup.add('close the setup client', async () => setupClient.close());
    const setup = new KvStore(setupClient);
    const meter = new CostMeter(etcd.endpoint, etcdPid);
    log(`etcd ${etcd.endpoint} (pid ${etcdPid ?? '?'}, data dir in ${root}); every phase below uses this one etcd`);
    log();

    // ------------------------------------------------------------ (1) floor
    // The value: what the scheduler writes, a SCHEDULED record with one log line.
    const sampleUuid = randomUUID();
    const value = JSON.stringify({
      ...vmRecord(sampleUuid, 0), host: hostName(0), status: 'SCHEDULED',
      log: [`${new Date().toISOString()} - scheduled on ${hostName(0)}`],
    });
    const floorPrefix = '/floor/k/';
    const guard = '/floor/guard';
    await setup.put(guard, 'leader');
    await pool(N, C, (i) => setup.put(`${floorPrefix}${String(i).padStart(6, '0')}`, value));
    const floorClient = createEtcdClient([etcd.endpoint]);
    cleanup.add('close the floor client', async () => floorClient.close());
    const floorKv = new KvStore(floorClient);
    await floorKv.get(guard); // connect before timing
    log(`(1) floor: ${N.toLocaleString('en-US')} keys created; transactions of the scheduler's shape (mod == rev AND guard key exists -> put ${value.length} B) from ONE client`);
    // Warm-up, not counted: V8 compiles the client's transaction path (the scheduler, later in this
    // process, runs with it compiled too, as a long-running scheduler would).
    const warm = await floorRun(floorKv, meter, floorPrefix, Math.min(2000, N), C, value, guard);
    log(`    warm-up (not counted): ${warm.ops.toLocaleString('en-US')} at concurrency ${C} -> ${rate(warm.ops, warm.ms)}`);
    const floor = await floorRun(floorKv, meter, floorPrefix, N, C, value, guard);
    log(`    concurrency ${C}: ${floor.ops.toLocaleString('en-US')} in ${ms(floor.ms, 0)} -> ${rate(floor.ops, floor.ms)}  (${floor.failed} failed)`);
    log(`      ${costLine(floor.cost, floor.ops)}`);
    const serialOps = Math.min(opts.serialOps, N);
    const floor1 = await floorRun(floorKv, meter, floorPrefix, serialOps, 1, value, guard);
    log(`    concurrency 1: ${floor1.ops.toLocaleString('en-US')} in ${ms(floor1.ms, 0)} -> ${rate(floor1.ops, floor1.ms)}  (${(floor1.ms / floor1.ops).toFixed(2)} ms each, ${floor1.failed} failed)`);
    log(`      ${costLine(floor1.cost, floor1.ops)}`);
    const BATCH = 16;
    const batchConc = Math.max(1, Math.round(C / BATCH));
    const floorB = await batchedFloorRun(floorClient, floorKv, meter, floorPrefix, N, BATCH, batchConc, value, guard);
    log(`    for context (what the scheduler's batches are made of, not the floor): ${BATCH} of those CAS puts per transaction, ${batchConc} transactions (${BATCH * batchConc} records) in flight: ` +
      `${floorB.ops.toLocaleString('en-US')} in ${ms(floorB.ms, 0)} -> ${rate(floorB.ops, floorB.ms)}  (${floorB.failed} failed)`);
    log(`      ${costLine(floorB.cost, floorB.ops)}`);
    floorClient.close();
    log();

    // --------------------------------------------------- (2) pre-written
    const lease = setupClient.lease(600);
    const leaseId = await lease.grant();
    cleanup.add('revoke the hosts lease', () => lease.revoke());
    const results: PlacementResult[] = [];

    const runScheduler = (keys: KeySpace, obs: Observed): { scheduler: Scheduler; client: ReturnType<typeof createEtcdClient> } => {
      // Its own client, as in `drover scheduler`.
      const client = createEtcdClient([etcd.endpoint]);
      const scheduler = new Scheduler({
        client, keys, policy: POLICY, electionTtl: 5, failoverMargin: 5,
        identity: `bench:${process.pid}`, logger: schedulerLogger(obs), concurrency: C, batchSize: opts.batchSize,
      });
      cleanup.add(`stop the scheduler for ${keys.prefix}`, async () => {
        await scheduler.stop();
        client.close();
      });
      return { scheduler, client };
    };

    {
      const keys = keySpace('/place');
      const th = now();
      await writeHosts(setup, keys, H, leaseId, C);
      const entries = vmEntries(keys, N);
      await pool(N, C, async (i) => {
        const e = entries[i]!;
        if (!(await setup.putIf(e.key, e.raw, 'absent'))) throw new Error(`${e.key} exists`);
      });
      log(`(2) drover, pre-written: ${H.toLocaleString('en-US')} host records + alive keys (one lease; host records and alive keys only, NO agents), ` +
        `${HOST_MEMORY} MiB / ${HOST_CPUS} CPUs each; ${N.toLocaleString('en-US')} VM records (REQUESTED_NEW, no host, ${VM_MEMORY} MiB, 1 vCPU) ` +
        `written in ${ms(now() - th, 0)}, before the scheduler starts`);
      const watcher = new EtcdWorker({ kind: 'watch', endpoint: etcd.endpoint, prefix: keys.vmPrefix, expect: N });
      cleanup.add('close the watch worker', () => watcher.close());
      await watcher.next('ready', 30_000, 'watch worker');
      const obs: Observed = { electedAt: Number.NaN, warnings: 0, firstWarnings: [] };
      const { scheduler } = runScheduler(keys, obs);
      let leaderAt = Number.NaN;
      let placedAt = Number.NaN;
      const profiler = opts.cpuProf ? new ThreadProfiler() : null;
      await profiler?.start();
      await meter.start();
      const t0 = now();
      scheduler.start();
      const poll = setInterval(() => {
        if (Number.isNaN(leaderAt) && scheduler.isLeader) leaderAt = now();
        if (Number.isNaN(placedAt) && scheduler.placed >= N) placedAt = now();
      }, 1);
      let watched: Extract<WorkerMessage, { type: 'watched' }>;
      try {
        watched = await watcher.next('watched', timeoutMs, `waiting for ${N} SCHEDULED records (scheduler placed ${scheduler.placed} so far)`);
      } catch (err) {
        clearInterval(poll);
        throw new Error(`${(err as Error).message}; scheduler.placed = ${scheduler.placed}`, { cause: err });
      }
      const cost = await meter.stop();
      const profile = await profiler?.stop();
      for (let i = 0; i < 10_000 && Number.isNaN(placedAt); i++) await sleep(1);
      clearInterval(poll);
      await watcher.close();
      const stamps = watched.keys.map(([, at]) => at).sort((a, b) => a - b);
      const last = stamps[stamps.length - 1]!;
      const r: PlacementResult = {
        variant: 'pre-written', vms: N, hosts: H, t0,
        electedMs: obs.electedAt - t0,
        leaderReadyMs: leaderAt - t0,
        firstScheduledMs: stamps[0]! - t0,
        allScheduledMs: last - t0,
        placedCounterMs: placedAt - t0,
        perSecFromStart: perSec(N, last - t0),
        perSecFromElected: perSec(N, last - obs.electedAt),
        perSecCounter: perSec(N, placedAt - t0),
        timeline: perSecond(stamps, t0),
        scheduledPuts: watched.scheduledPuts,
        repeats: watched.repeats,
        warnings: obs.warnings,
        firstWarnings: obs.firstWarnings,
        cost,
        check: await verify(setup, keys, N, H),
      };
      results.push(r);
      printPlacement(r);
      if (profile && opts.cpuProf) await printProfile(profile, join(opts.cpuProf, 'placement-prewritten.cpuprofile'));
      await scheduler.stop();
      log();
    }

    // ---------------------------------------------------- (3) streaming
    if (opts.stream) {
      const keys = keySpace('/stream');
      await writeHosts(setup, keys, H, leaseId, C);
      const obs: Observed = { electedAt: Number.NaN, warnings: 0, firstWarnings: [] };
      const { scheduler } = runScheduler(keys, obs);
      const tStart = now();
      scheduler.start();
      while (!scheduler.isLeader) {
        if (now() - tStart > 60_000) throw new Error('the streaming scheduler was not elected within 60 s');
        await sleep(5);
      }
      await sleep(500); // its first (empty) pass is over
      const entries = vmEntries(keys, N);
      log(`(3) drover, streaming: a fresh prefix, the same ${H.toLocaleString('en-US')} hosts (records + alive keys, no agents), the scheduler already leading; ` +
        `${N.toLocaleString('en-US')} VM records created by another client (a worker thread) with ${C} in flight while it runs`);
      const watcher = new EtcdWorker({ kind: 'watch', endpoint: etcd.endpoint, prefix: keys.vmPrefix, expect: N });
      cleanup.add('close the streaming watch worker', () => watcher.close());
      const writer = new EtcdWorker({ kind: 'write', endpoint: etcd.endpoint, entries, concurrency: C });
      cleanup.add('close the writer worker', () => writer.close());
      await watcher.next('ready', 30_000, 'watch worker');
      await writer.next('ready', 30_000, 'writer worker');
      let placedAt = Number.NaN;
      const profiler = opts.cpuProf ? new ThreadProfiler() : null;
      await profiler?.start();
      await meter.start();
      writer.send('go');
      const poll = setInterval(() => {
        if (Number.isNaN(placedAt) && scheduler.placed >= N) placedAt = now();
      }, 1);
      const written = await writer.next('written', timeoutMs, 'writing the records');
      const watched = await watcher.next('watched', timeoutMs, `waiting for ${N} SCHEDULED records (scheduler placed ${scheduler.placed})`);
      const cost = await meter.stop();
      const profile = await profiler?.stop();
      for (let i = 0; i < 10_000 && Number.isNaN(placedAt); i++) await sleep(1);
      clearInterval(poll);
      await watcher.close();
      await writer.close();
      const t0 = written.t0;
      const seen = new Map(watched.keys);
      const stamps = [...seen.values()].sort((a, b) => a - b);
      const last = stamps[stamps.length - 1]!;
      const lat = entries.map((e, i) => (seen.get(e.key) ?? Number.NaN) - (written.stamps[i] ?? Number.NaN));
      const r: PlacementResult = {
        variant: 'streaming', vms: N, hosts: H, t0,
        electedMs: Number.NaN, leaderReadyMs: Number.NaN,
        firstScheduledMs: stamps[0]! - t0,
        allScheduledMs: last - t0,
        placedCounterMs: placedAt - t0,
        perSecFromStart: perSec(N, last - t0),
        perSecFromElected: Number.NaN,
        perSecCounter: perSec(N, placedAt - t0),
        timeline: perSecond(stamps, t0),
        scheduledPuts: watched.scheduledPuts,
        repeats: watched.repeats,
        warnings: obs.warnings,
        firstWarnings: obs.firstWarnings,
        cost,
        check: await verify(setup, keys, N, H),
        writes: { ms: written.t1 - written.t0, perSec: perSec(N - written.failed, written.t1 - written.t0), failed: written.failed, latency: summarize(lat) },
      };
      results.push(r);
      printPlacement(r);
      if (profile && opts.cpuProf) await printProfile(profile, join(opts.cpuProf, 'placement-streaming.cpuprofile'));
      await scheduler.stop();
      log();
    }

    // ------------------------------------------- (4) decision cost, no etcd
    const dc = decisionCost(keySpace('/decide'), H, vmEntries(keySpace('/decide'), N));
    log(`(4) the scheduler's own CPU per placement, in this process without etcd (same ClusterView and placeVm, ${H.toLocaleString('en-US')} hosts, ${N.toLocaleString('en-US')} VMs):`);
    log(indent(table([
      ['step', 'per call', 'caps the rate at'],
      ['ClusterView.put of one VM record (JSON + zod; each watch event, and each record the scheduler writes)', `${dc.viewPutUs.toFixed(1)} us`, `${Math.round(1e6 / dc.viewPutUs).toLocaleString('en-US')}/s`],
      [`ClusterView.capacities() (the cached array of ${H.toLocaleString('en-US')} hosts)`, `${dc.capacitiesUs.toFixed(1)} us`, `${Math.round(1e6 / dc.capacitiesUs).toLocaleString('en-US')}/s`],
      ['placeVm() on a prepared array (one pass over every host, no sort)', `${dc.placeVmUs.toFixed(1)} us`, `${Math.round(1e6 / dc.placeVmUs).toLocaleString('en-US')}/s`],
      ['one decision as pass() makes it: capacities() + placeVm() + reserve()', `${dc.decisionUs.toFixed(1)} us`, `${Math.round(1e6 / dc.decisionUs).toLocaleString('en-US')}/s`],
      ['for comparison: one scan for the most free memory, no allocation, no sort', `${dc.argmaxUs.toFixed(1)} us`, `${Math.round(1e6 / dc.argmaxUs).toLocaleString('en-US')}/s`],
    ]), 6));
    log(`    the client's own cost of one CAS transaction, from (1): ${((floor.cost.elu * floor.cost.wallMs) / floor.ops * 1000).toFixed(0)} us of event loop at concurrency ${C}`);
    log();

    // ------------------------------------------------------------ summary
    const pre = results[0]!;
    const half = floor.perSec / 2;
    const targets = [
      { target: `placements/s (pre-written, watch, from start) >= half the floor at concurrency ${C} (${Math.round(half).toLocaleString('en-US')}/s)`, figure: `${Math.round(pre.perSecFromStart).toLocaleString('en-US')}/s`, pass: pre.perSecFromStart >= half },
      { target: 'placements/s (pre-written, watch, from start) >= 2,000/s', figure: `${Math.round(pre.perSecFromStart).toLocaleString('en-US')}/s`, pass: pre.perSecFromStart >= 2000 },
    ];
    log('summary');
    log(table([
      ['figure', 'value'],
      [`(1) floor: CAS txns/s, one client, concurrency ${C}`, `${Math.round(floor.perSec).toLocaleString('en-US')}/s`],
      ['(1) floor: CAS txns/s, one client, concurrency 1', `${Math.round(floor1.perSec).toLocaleString('en-US')}/s`],
      [`(1) context: CAS puts/s, ${floorB.batch} per txn, ${floorB.concurrency} txns in flight`, `${Math.round(floorB.perSec).toLocaleString('en-US')}/s`],
      ...results.flatMap((r) => [
        [`(${r.variant === 'pre-written' ? 2 : 3}) ${r.variant}: placements/s (watch, from ${r.variant === 'pre-written' ? 'start()' : 'first put'})`, `${Math.round(r.perSecFromStart).toLocaleString('en-US')}/s (${N.toLocaleString('en-US')} in ${ms(r.allScheduledMs, 0)})`],
        ...(r.variant === 'pre-written' ? [['(2) pre-written: placements/s (watch, from election)', `${Math.round(r.perSecFromElected).toLocaleString('en-US')}/s`]] : []),
        [`(${r.variant === 'pre-written' ? 2 : 3}) ${r.variant}: placements/s (scheduler.placed counter)`, `${Math.round(r.perSecCounter).toLocaleString('en-US')}/s`],
      ]),
    ]));
    log();
    log('targets (information only)');
    log(table([['target', 'figure', ''], ...targets.map((t) => [t.target, t.figure, t.pass ? 'PASS' : 'MISS'])]));
    log(`[end: ${(await busyNote()).text}]`);

    if (opts.json) {
      await writeFile(opts.json, `${JSON.stringify({ machine, load, options: opts, floor, floor1, floorBatched: floorB, results, decisionCost: dc, targets }, null, 2)}\n`);
    }
  } finally {
    await cleanup.run();
  }
}

async function printProfile(profile: CpuProfile, file: string): Promise<void> {
  await writeFile(file, JSON.stringify(profile));
  const s = summarizeProfile(profile, REPO_ROOT);
  log(`    CPU profile of the main thread (${file}): ${ms(s.totalMs, 0)} profiled, idle ${ms(s.idleMs, 0)}, GC ${ms(s.gcMs, 0)}`);
  log('    top self time (functions V8 inlined are counted in their caller):');
  log(indent(table([['function', 'where', 'self', 'total'], ...s.rows.slice(0, 25).map((x) => [x.name, x.where, ms(x.selfMs, 0), ms(x.totalMs, 0)])]), 6));
  log('    inclusive time in src/:');
  const ours = s.rows.filter((x) => /^(dist\/)?src\//.test(x.where)).sort((a, b) => b.totalMs - a.totalMs).slice(0, 25);
  log(indent(table([['function', 'where', 'self', 'total'], ...ours.map((x) => [x.name, x.where, ms(x.selfMs, 0), ms(x.totalMs, 0)])]), 6));
}

function indent(text: string, n: number): string {
  return text.split('\n').map((l) => ' '.repeat(n) + l).join('\n');
}

function printPlacement(r: PlacementResult): void {
  const n = r.vms.toLocaleString('en-US');
  if (r.variant === 'pre-written') {
    log(`    scheduler.start() -> elected (its log line) ${ms(r.electedMs, 0)}; -> leading with the cluster listed ${ms(r.leaderReadyMs, 0)} (1 ms polling)`);
  } else if (r.writes) {
    log(`    the writer: ${n} creates in ${ms(r.writes.ms, 0)} (${Math.round(r.writes.perSec).toLocaleString('en-US')}/s, ${r.writes.failed} failed)`);
    log(`    per VM, create committed (writer) -> SCHEDULED seen (watch): p50 ${ms(r.writes.latency.p50, 0)}  p90 ${ms(r.writes.latency.p90, 0)}  p99 ${ms(r.writes.latency.p99, 0)}  max ${ms(r.writes.latency.max, 0)}`);
  }
  const from = r.variant === 'pre-written' ? 'start()' : 'the first put';
  log(`    ${from} -> first SCHEDULED seen ${ms(r.firstScheduledMs, 0)}; -> all ${n} SCHEDULED seen ${ms(r.allScheduledMs, 0)} -> ${Math.round(r.perSecFromStart).toLocaleString('en-US')} placements/s` +
    (r.variant === 'pre-written' ? ` (${Math.round(r.perSecFromElected).toLocaleString('en-US')}/s from the election)` : ''));
  log(`    scheduler.placed reached ${n} at ${ms(r.placedCounterMs, 0)} (${Math.round(r.perSecCounter).toLocaleString('en-US')}/s; 1 ms polling of the scheduler's own event loop)`);
  log(`    SCHEDULED seen per second from ${from}: ${r.timeline.join(' ')}`);
  log(`    ${r.scheduledPuts} SCHEDULED puts seen, ${r.repeats} record(s) written SCHEDULED more than once; scheduler warnings: ${r.warnings}${r.firstWarnings.length ? ` (first: ${r.firstWarnings[0]})` : ''}`);
  log(`    in etcd afterwards: ${r.check.scheduled} of ${n} SCHEDULED; VMs per host min ${r.check.minPerHost} max ${r.check.maxPerHost}; hosts over capacity: ${r.check.overCapacity}`);
  const placementTxns = r.cost.etcd.txn! - (r.variant === 'streaming' ? r.vms : 0);
  log(`    cost: ${costLine(r.cost, r.vms)} (${placementTxns} placement Txn${r.variant === 'streaming' ? ` besides the ${n} creates` : ''}: ` +
    `${(r.vms / Math.max(1, placementTxns)).toFixed(1)} records per transaction)`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`placement: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
