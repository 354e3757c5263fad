/**
 * Start-latency benchmark: how much time drover adds to starting a VM, next
 * to what qemu itself costs, in one run (`make bench`, or
 * `node dist/bench/start-latency.js [--count N] [--json FILE]
 * [--agent-log-level LEVEL] [--agent-log FILE] [--agent-cpu-prof DIR]`).
 *
 *  (a)  the physical floor: qemu -S -accel tcg -nodefaults -display none
 *       -m 64 with a QMP socket, spawned directly, spawn → greeting line
 *       (the target's reference), and → the first answered QMP command
 *       (qmp_capabilities and query-status written together on the greeting);
 *  (a2) the same, with drover's exact argv for the benchmark's VM (what qemu
 *       costs for that machine type and disk), to greeting and to the
 *       query-status reply that says "running" (what RUNNING means);
 *  (a3) QemuHypervisor.start() in this process, no etcd (drover's
 *       hypervisor layer alone), each VM killed before the next;
 *  (a4) the same with each VM left running, as in (b), where the k-th VM
 *       starts next to k-1 running guests (which slow qemu down);
 *  (b)  the real thing: a real etcd, `bin/drover agent` as a subprocess,
 *       VMs created one after another by an etcd put; put → STARTING and
 *       put → RUNNING as seen by an etcd watch;
 *  (c)  a burst: 30 puts at once, until all are RUNNING;
 *  (d)  the agent's RSS and idle CPU with 30 VMs running.
 *
 * The guest is a 512-byte raw disk whose boot sector is `cli; hlt; jmp $-1`,
 * so 30 of them cost little CPU under TCG (about 0.9% of a core each).
 * docs/benchmarks.md explains the figures and records a run. Everything started here
 * (qemus, etcd, the agent, the temp dir) is removed at the end, also on
 * error or Ctrl-C. The script exits 0 unless something broke: the targets
 * are information.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { keySpace } from '../src/contract/keys.js';
import { vmSpecSchema } from '../src/contract/vm-record.js';
import { buildQemuArgs } from '../src/hypervisor/qemu/build-qemu-args.js';
import { QemuHypervisor } from '../src/hypervisor/qemu/qemu-hypervisor.js';
import { lookupQemuUser } from '../src/hypervisor/qemu/qemu-user.js';
import { runPaths } from '../src/hypervisor/qemu/run-dir.js';
import { rawObject, VmRepository } from '../src/store/vm-repository.js';
import { clockTicksPerSecond, cpuTicks, killQemusMentioning, machineInfo, pidsMentioning, qemuPidsMentioning, rssKiB, type MachineInfo } from './lib/procfs.js';
import { probeQemu } from './lib/qmp-probe.js';
import { StatusWatch, type Json } from './lib/status-watch.js';
import { benchOptions } from './lib/options.js';
import { ms, summarize, table, type Summary } from './lib/stats.js';
import { startBenchEtcd } from './lib/bench-etcd.js';
import { makeHaltDisk } from './lib/halt-disk.js';
import { Cleanup } from './lib/cleanup.js';
import { startAgentProc, stopAgentProc, waitAlive } from './lib/agent-process.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DROVER_BIN = join(REPO_ROOT, 'bin', 'drover');
const QEMU = 'qemu-system-x86_64';
const HOST = 'bench';
const PREFIX = '/bench';
const IDLE_WINDOW_MS = 10_000;
const SETTLE_MS = 3_000;
const VM_TIMEOUT_MS = 30_000;

interface Options {
  count: number;
  json?: string;
  agentLogLevel: string;
  agentLog?: string;
  agentCpuProf?: string;
}

function readOptions(args: string[]): Options {
  const v = benchOptions(
    'node dist/bench/start-latency.js [--count N] [--json FILE] [--agent-log-level LEVEL] [--agent-log FILE] [--agent-cpu-prof DIR]',
    {
      count: { type: 'string' },
      json: { type: 'string' },
      'agent-log-level': { type: 'string' },
      'agent-log': { type: 'string' },
      'agent-cpu-prof': { type: 'string' },
    },
    args,
  );
  return {
    count: v.count === undefined ? 30 : Math.max(1, Number.parseInt(v.count, 10)),
    agentLogLevel: v['agent-log-level'] ?? 'warn',
    ...(v.json !== undefined ? { json: v.json } : {}),
    ...(v['agent-log'] !== undefined ? { agentLog: v['agent-log'] } : {}),
    ...(v['agent-cpu-prof'] !== undefined ? { agentCpuProf: v['agent-cpu-prof'] } : {}),
  };
}

function log(line = ''): void {
  console.log(line);
}

function indent(text: string, n: number): string {
  return text.split('\n').map((l) => ' '.repeat(n) + l).join('\n');
}

/** Busy and total jiffies of all CPUs together, from /proc/stat. */
async function cpuJiffies(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

/**
 * What else the machine is doing: all CPUs' busy share over one second (the
 * load average lags by a minute, and includes this benchmark's own earlier
 * phases), the 1-minute load average, and the qemu processes on the host.
 */
async function loadNote(): Promise<{ load1: number; busyPct: number; qemus: number; text: string }> {
  const a = await cpuJiffies();
  await sleep(1000);
  const b = await cpuJiffies();
  const busyPct = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100;
  const load1 = Number((await readFile('/proc/loadavg', 'utf8').catch(() => 'NaN')).split(' ')[0]);
  const qemus = (await pidsMentioning(/(^|\/)qemu-system-/, '')).length;
  return { load1, busyPct, qemus, text: `CPUs ${busyPct.toFixed(0)}% busy over 1 s, load average ${load1.toFixed(2)}, ${qemus} qemu process(es) on the host` };
}

const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));

/** A spec the agent accepts: one raw disk holding the halting boot sector. */
function benchSpec(disk: string): Json {
  return { vcpus: 1, memory: 64, disks: [{ path: disk, format: 'raw' }], vnc: 'none' };
}

// ---------------------------------------------------------------- (a) floors

async function floorRuns(root: string, count: number, children: Set<ChildProcess>): Promise<{ greeting: number[]; answered: number[] }> {
  const dir = join(root, 'floor');
  await mkdir(dir, { recursive: true });
  const greeting: number[] = [];
  const answered: number[] = [];
  for (let i = 0; i < count; i++) {
    const sock = join(dir, `${i}.qmp`);
    const argv = [
      '-S', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-m', '64',
      '-chardev', `socket,id=qmp,path=${sock},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control',
    ];
    const r = await probeQemu(QEMU, argv, sock, { untilAnswer: true, track: (c) => children.add(c) });
    greeting.push(r.greetingMs);
    answered.push(r.answeredMs ?? Number.NaN);
  }
  return { greeting, answered };
}

async function droverArgvRuns(root: string, count: number, children: Set<ChildProcess>): Promise<{ greeting: number[]; running: number[]; argv: string[] }> {
  const dir = join(root, 'argv');
  const disks = join(root, 'disks');
  await mkdir(dir, { recursive: true });
  const greeting: number[] = [];
  const running: number[] = [];
  let shown: string[] = [];
  for (let i = 0; i < count; i++) {
    const uuid = randomUUID();
    const paths = runPaths(dir, uuid);
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    const spec = vmSpecSchema.parse(benchSpec(await makeHaltDisk(disks, uuid)));
    const argv = buildQemuArgs({ uuid, name: `argv-${i}`, spec, paths, accel: 'tcg', detectedFormats: ['raw'] });
    shown = argv;
    const r = await probeQemu(QEMU, argv, paths.qmpSocket, { untilRunning: true, track: (c) => children.add(c) });
    greeting.push(r.greetingMs);
    running.push(r.runningMs ?? Number.NaN);
  }
  return { greeting, running, argv: shown };
}

/**
 * QemuHypervisor.start() in this process. `keepRunning`: each VM is left
 * running until all are started, as in (b), where the k-th start happens
 * next to k-1 running guests; otherwise each is killed before the next.
 */
async function hypervisorRuns(root: string, count: number, keepRunning: boolean): Promise<{ spawned: number[]; resolved: number[] }> {
  const runRoot = join(root, keepRunning ? 'hv-keep' : 'hv');
  const disks = join(root, 'disks');
  // Confined as an agent runs it: qemu_user drover-qemu, the disks the only allowed files.
  await chmod(root, 0o711);
  const hv = new QemuHypervisor({ runRoot, accel: 'tcg', allowedPaths: [disks], qemuUser: await lookupQemuUser('drover-qemu') });
  const spawned: number[] = [];
  const resolved: number[] = [];
  const started: string[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const uuid = randomUUID();
      const spec = vmSpecSchema.parse(benchSpec(await makeHaltDisk(disks, uuid)));
      let tSpawned = Number.NaN;
      const t0 = performance.now();
      await hv.start({ uuid, name: `hv-${i}`, spec }, { onSpawned: () => (tSpawned = performance.now()) });
      const t1 = performance.now();
      spawned.push(tSpawned - t0);
      resolved.push(t1 - t0);
      if (keepRunning) {
        started.push(uuid);
      } else {
        await hv.stop(uuid, { timeoutMs: 0, force: true });
        await hv.destroy(uuid);
      }
    }
  } finally {
    await Promise.all(started.map((uuid) => hv.stop(uuid, { timeoutMs: 0, force: true }).catch(() => undefined)));
    await hv.detachAll();
  }
  return { spawned, resolved };
}

// ----------------------------------------------------------- (b) the agent

function vmRecord(uuid: string, name: string, disk: string): Json {
  return { uuid, name, host: HOST, status: 'REQUESTED_NEW', spec: benchSpec(disk) };
}

/** Where one start's time went, from the agent's own timestamps in the RUNNING record (wall clock, ms). */
interface StartBreakdown {
  /** put → qemu spawned (runtime.started_at, taken right after spawn). */
  putToSpawn: number;
  /** spawn → the STARTING write composed (its log line). */
  spawnToStartingWrite: number;
  /** STARTING composed → seen by the benchmark's watch. */
  startingWriteToSeen: number;
  /** spawn → the RUNNING write composed (QMP connect, greeting, query-status, STARTING write done). */
  spawnToRunningWrite: number;
  /** RUNNING composed → seen by the benchmark's watch. */
  runningWriteToSeen: number;
}

function logTime(rec: Json, pattern: RegExp): number | undefined {
  const lines = Array.isArray(rec.log) ? (rec.log as unknown[]) : [];
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i];
    if (typeof l !== 'string' || !pattern.test(l)) continue;
    const t = Date.parse(l.slice(0, l.indexOf(' - ')));
    if (Number.isFinite(t)) return t;
  }
  return undefined;
}

function breakdown(rec: Json | undefined, putWall: number, startingSeenWall: number, runningSeenWall: number): StartBreakdown | null {
  if (!rec) return null;
  const runtime = rec.runtime as { started_at?: string } | undefined;
  const spawned = runtime?.started_at ? Date.parse(runtime.started_at) : Number.NaN;
  const startingWrite = logTime(rec, /- starting on /);
  const runningWrite = logTime(rec, /- (re)?started on /);
  if (!Number.isFinite(spawned) || startingWrite === undefined || runningWrite === undefined) return null;
  return {
    putToSpawn: spawned - putWall,
    spawnToStartingWrite: startingWrite - spawned,
    startingWriteToSeen: startingSeenWall - startingWrite,
    spawnToRunningWrite: runningWrite - spawned,
    runningWriteToSeen: runningSeenWall - runningWrite,
  };
}

/**
 * With the agent at debug level, its own log places two more points in a
 * start: when the worker decided to start (`reconcile step` start) and when
 * the hypervisor saw QMP report running (`qemu started`).
 */
interface AgentLogStamps {
  decided?: number;
  qmpRunning?: number;
}

async function agentLogStamps(logFile: string): Promise<Map<string, AgentLogStamps>> {
  const out = new Map<string, AgentLogStamps>();
  const text = await readFile(logFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let o: Json;
    try {
      o = JSON.parse(line) as Json;
    } catch {
      continue;
    }
    const time = typeof o.time === 'number' ? o.time : undefined;
    if (time === undefined) continue;
    if (o.msg === 'reconcile step' && o.step === 'start' && typeof o.vm === 'string') {
      const s = out.get(o.vm) ?? {};
      s.decided ??= time;
      out.set(o.vm, s);
    } else if (o.msg === 'qemu started' && typeof o.uuid === 'string') {
      const s = out.get(o.uuid) ?? {};
      s.qmpRunning ??= time;
      out.set(o.uuid, s);
    }
  }
  return out;
}

// ------------------------------------------------------------------- main

interface Results {
  machine: MachineInfo;
  count: number;
  floor: Summary;
  floorAnswered: Summary;
  droverArgvGreeting: Summary;
  droverArgvRunning: Summary;
  hypervisorSpawned: Summary;
  hypervisorResolved: Summary;
  hypervisorKeptSpawned: Summary;
  hypervisorKeptResolved: Summary;
  agentReadyMs: number;
  putToStarting: Summary;
  putToRunning: Summary;
  firstPutToRunning: number;
  breakdown: Record<keyof StartBreakdown, Summary> | null;
  breakdownFromAgentLog: Record<string, Summary> | null;
  deleteAllMs: number;
  burstAllStartingMs: number;
  burstAllRunningMs: number;
  burstPerVm: Summary;
  rssIdleKiB: number;
  rssBeforeVmsKiB: number;
  cpuIdlePct: number;
  cpuIdleSteadyPct: number;
  idleWindows: Array<{ agentPct: number; qemusPct: number; etcdPct: number | null; rssStartKiB: number; rssEndKiB: number }>;
  qemusCpuPct: number;
  qemusRssKiB: number;
  etcdCpuPct: number | null;
  droverArgv: string[];
  loads: Array<{ at: string; load1: number; busyPct: number; qemus: number }>;
  seqAgentCpuMsPerStart: number;
  burstAgentCpuMs: number;
  targets: Array<{ target: string; figure: string; pass: boolean }>;
}

async function main(): Promise<void> {
  const opts = readOptions(process.argv.slice(2));
  const n = opts.count;
  const cleanup = new Cleanup().onSignals();

  const root = await mkdtemp(join(tmpdir(), 'drover-bench-'));
  cleanup.add('remove the temp dir', () => rm(root, { recursive: true, force: true }));
  // Every qemu started here (directly or by the agent) has a path under root in its argv.
  cleanup.add('kill the qemus', () => killQemusMentioning(root));
  const floorChildren = new Set<ChildProcess>();
  cleanup.add('kill the floor qemus', async () => {
    for (const c of floorChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  try {
    const machine = await machineInfo(QEMU, REPO_ROOT);
    log('drover start-latency benchmark');
    log(table([
      ['machine', ''],
      ['CPU', machine.cpuModel],
      ['cores', String(machine.cores)],
      ['RAM', `${machine.ramMiB} MiB`],
      ['kernel', machine.kernel],
      ['qemu', machine.qemu],
      ['etcd', machine.etcd],
      ['node', machine.node],
      ['/dev/kvm', machine.kvm ? 'present (not used: the benchmark runs TCG)' : 'absent'],
      ['drover', machine.drover],
    ]));
    const loads: Results['loads'] = [];
    const noteLoad = async (at: string, ownQemus = 0): Promise<void> => {
      const l = await loadNote();
      loads.push({ at, load1: l.load1, busyPct: l.busyPct, qemus: l.qemus });
      log(`[${at}: ${l.text}${ownQemus > 0 ? `, ${ownQemus} of them this benchmark's` : ''}]`);
      if (ownQemus === 0 && l.busyPct > 15) log('[warning: the machine is busy with other work; latencies will be inflated and noisy]');
      if (ownQemus === 0 && l.qemus > 0) log('[warning: other qemu processes are running on this host; they compete for the CPUs]');
    };
    await noteLoad('start');
    log();

    const disks = join(root, 'disks');
    await mkdir(disks, { recursive: true });

    // (a) floors
    log(`(a) floor: ${QEMU} -S -accel tcg -nodefaults -display none -m 64 + QMP socket, spawn -> greeting, ${n}x sequential`);
    const floorRaw = await floorRuns(root, n, floorChildren);
    const floor = summarize(floorRaw.greeting);
    const floorAnswered = summarize(floorRaw.answered);
    log(`    -> greeting p50 ${ms(floor.p50)}  p99 ${ms(floor.p99)}  min ${ms(floor.min)}  max ${ms(floor.max)}`);
    log(`    -> first QMP answer (qmp_capabilities + query-status sent together on the greeting): p50 ${ms(floorAnswered.p50)}  p99 ${ms(floorAnswered.p99)}`);
    log(`(a2) drover's own qemu argv for the bench VM (q35, virtio-blk disk, no -S), spawned directly, ${n}x`);
    const argvRuns = await droverArgvRuns(root, n, floorChildren);
    const argvGreeting = summarize(argvRuns.greeting);
    const argvRunning = summarize(argvRuns.running);
    log(`    -> greeting p50 ${ms(argvGreeting.p50)}  p99 ${ms(argvGreeting.p99)};  -> query-status running p50 ${ms(argvRunning.p50)}  p99 ${ms(argvRunning.p99)}`);
    log(`(a3) QemuHypervisor.start() in-process (no etcd, no agent), ${n}x, each VM killed before the next`);
    const hv = await hypervisorRuns(root, n, false);
    const hvSpawned = summarize(hv.spawned);
    const hvResolved = summarize(hv.resolved);
    log(`    -> onSpawned p50 ${ms(hvSpawned.p50)}  p99 ${ms(hvSpawned.p99)};  -> start() resolved p50 ${ms(hvResolved.p50)}  p99 ${ms(hvResolved.p99)}`);
    log(`(a4) the same, each VM left running until all ${n} are up (the conditions of (b))`);
    const hvKeep = await hypervisorRuns(root, n, true);
    const hvKeepSpawned = summarize(hvKeep.spawned);
    const hvKeepResolved = summarize(hvKeep.resolved);
    log(`    -> onSpawned p50 ${ms(hvKeepSpawned.p50)}  p99 ${ms(hvKeepSpawned.p99)};  -> start() resolved p50 ${ms(hvKeepResolved.p50)}  p99 ${ms(hvKeepResolved.p99)}`);
    log();

    log();
    await noteLoad('before (b)');
    // (b) etcd + agent
    const etcdDir = join(root, 'etcd');
    const { endpoint: etcdEndpoint, kv } = await startBenchEtcd(root, cleanup); // data under etcdDir
    const keys = keySpace(PREFIX);
    const repo = new VmRepository(kv, keys);
    const watch = new StatusWatch(kv, keys);
    await watch.start();
    cleanup.add('close the watch', () => watch.close());

    const agentConfig = { prefix: PREFIX, log_level: opts.agentLogLevel, foreign_scope: 'state-dir' };
    const agent = await startAgentProc(DROVER_BIN, root, HOST, etcdEndpoint, agentConfig, opts.agentCpuProf ? { cpuProfDir: opts.agentCpuProf } : {});
    cleanup.add('stop the agent', () => stopAgentProc(agent));
    if (opts.agentLog) {
      const dest = opts.agentLog;
      // Registered after "stop the agent", so it runs before it: copy what is there, then stop.
      cleanup.add('copy the agent log', async () => {
        await stopAgentProc(agent);
        await copyFile(agent.logFile, dest);
      });
    }
    const agentReadyMs = await waitAlive(agent, kv, keys.host(HOST));
    const rssBeforeVms = (await rssKiB(agent.pid)) ?? Number.NaN;
    log(`(b) etcd ${etcdEndpoint}, agent pid ${agent.pid} registered after ${ms(agentReadyMs, 0)} (RSS ${(rssBeforeVms / 1024).toFixed(1)} MiB)`);

    const seq: string[] = [];
    const putToStarting: number[] = [];
    const putToRunning: number[] = [];
    const parts: StartBreakdown[] = [];
    const putWalls = new Map<string, number>();
    const seqTicks0 = (await cpuTicks(agent.pid)) ?? Number.NaN;
    // performance.now() and Date.now() pairs, to place the agent's wall-clock stamps.
    const wallOf = (perf: number, t0Perf: number, t0Wall: number): number => t0Wall + (perf - t0Perf);
    for (let i = 0; i < n; i++) {
      const uuid = randomUUID();
      const disk = await makeHaltDisk(disks, uuid);
      const record = vmRecord(uuid, `bench-${i}`, disk);
      seq.push(uuid);
      const t0Wall = Date.now();
      const t0 = performance.now();
      if (!(await repo.create(uuid, record))) throw new Error(`VM ${uuid} already exists`);
      await watch.waitStatus([uuid], 'RUNNING', VM_TIMEOUT_MS);
      const tStarting = watch.seenAt(uuid, 'STARTING');
      const tRunning = watch.seenAt(uuid, 'RUNNING') as number;
      putToStarting.push(tStarting !== undefined ? tStarting - t0 : Number.NaN);
      putToRunning.push(tRunning - t0);
      const b = breakdown(watch.records.get(uuid), t0Wall, wallOf(tStarting ?? Number.NaN, t0, t0Wall), wallOf(tRunning, t0, t0Wall));
      if (b) parts.push(b);
      putWalls.set(uuid, t0Wall);
    }
    const hz = await clockTicksPerSecond();
    const seqAgentCpuMs = ((((await cpuTicks(agent.pid)) ?? Number.NaN) - seqTicks0) / hz) * 1000;
    const sStarting = summarize(putToStarting);
    const sRunning = summarize(putToRunning);
    log(`    put -> STARTING (qemu spawned)  p50 ${ms(sStarting.p50)}  p99 ${ms(sStarting.p99)}  min ${ms(sStarting.min)}  max ${ms(sStarting.max)}`);
    log(`    put -> RUNNING                  p50 ${ms(sRunning.p50)}  p99 ${ms(sRunning.p99)}  min ${ms(sRunning.min)}  max ${ms(sRunning.max)}  (first, cold: ${ms(putToRunning[0] ?? Number.NaN)})`);
    log(`    agent CPU during the sequential starts: ${seqAgentCpuMs.toFixed(0)} ms in all, ${(seqAgentCpuMs / n).toFixed(1)} ms per VM start`);
    let parted: Results['breakdown'] = null;
    if (parts.length > 0) {
      const pick = (k: keyof StartBreakdown): Summary => summarize(parts.map((p) => p[k]));
      parted = {
        putToSpawn: pick('putToSpawn'),
        spawnToStartingWrite: pick('spawnToStartingWrite'),
        startingWriteToSeen: pick('startingWriteToSeen'),
        spawnToRunningWrite: pick('spawnToRunningWrite'),
        runningWriteToSeen: pick('runningWriteToSeen'),
      };
      log('    where the time goes (agent wall-clock stamps in the record, 1 ms resolution):');
      log(indent(table([
        ['segment', 'p50', 'p99'],
        ['put -> qemu spawned (runtime.started_at)', ms(parted.putToSpawn.p50, 0), ms(parted.putToSpawn.p99, 0)],
        ['spawned -> STARTING write composed', ms(parted.spawnToStartingWrite.p50, 0), ms(parted.spawnToStartingWrite.p99, 0)],
        ['STARTING composed -> seen by watch', ms(parted.startingWriteToSeen.p50, 0), ms(parted.startingWriteToSeen.p99, 0)],
        ['spawned -> RUNNING write composed', ms(parted.spawnToRunningWrite.p50, 0), ms(parted.spawnToRunningWrite.p99, 0)],
        ['RUNNING composed -> seen by watch', ms(parted.runningWriteToSeen.p50, 0), ms(parted.runningWriteToSeen.p99, 0)],
      ]), 6));
    }
    let fromLog: Record<string, Summary> | null = null;
    if (opts.agentLogLevel === 'debug' || opts.agentLogLevel === 'trace') {
      const stamps = await agentLogStamps(agent.logFile);
      const rows: Array<Record<string, number>> = [];
      for (const uuid of seq) {
        const st = stamps.get(uuid);
        const rec = watch.records.get(uuid);
        const put = putWalls.get(uuid);
        const spawned = Date.parse(String((rec?.runtime as { started_at?: string } | undefined)?.started_at));
        const runningWrite = rec ? logTime(rec, /- (re)?started on /) : undefined;
        if (!st?.decided || !st.qmpRunning || put === undefined || !Number.isFinite(spawned) || runningWrite === undefined) continue;
        rows.push({
          putToDecided: st.decided - put,
          decidedToSpawned: spawned - st.decided,
          spawnedToQmpRunning: st.qmpRunning - spawned,
          qmpRunningToRunningWrite: runningWrite - st.qmpRunning,
        });
      }
      if (rows.length > 0) {
        const pick = (k: string): Summary => summarize(rows.map((r) => r[k] as number));
        fromLog = {
          putToDecided: pick('putToDecided'),
          decidedToSpawned: pick('decidedToSpawned'),
          spawnedToQmpRunning: pick('spawnedToQmpRunning'),
          qmpRunningToRunningWrite: pick('qmpRunningToRunningWrite'),
        };
        log("    with the agent's debug log:");
        log(indent(table([
          ['segment', 'p50', 'p99'],
          ['put -> worker decides to start', ms(fromLog.putToDecided!.p50, 0), ms(fromLog.putToDecided!.p99, 0)],
          ['decided -> qemu spawned', ms(fromLog.decidedToSpawned!.p50, 0), ms(fromLog.decidedToSpawned!.p99, 0)],
          ['spawned -> QMP says running (hypervisor)', ms(fromLog.spawnedToQmpRunning!.p50, 0), ms(fromLog.spawnedToQmpRunning!.p99, 0)],
          ['QMP running -> RUNNING write composed', ms(fromLog.qmpRunningToRunningWrite!.p50, 0), ms(fromLog.qmpRunningToRunningWrite!.p99, 0)],
        ]), 6));
      }
    }
    log();

    // (c) delete those, then a burst
    const tDel = performance.now();
    await Promise.all(seq.map((uuid) => repo.update(uuid, (cur) => ({ ...(rawObject(cur.raw) ?? {}), status: 'REQUESTED_DELETE', force_stop: true }))));
    await watch.waitDeleted(seq, 60_000);
    const deleteAllMs = performance.now() - tDel;
    log(`(c) deleted the ${n} VMs (REQUESTED_DELETE, force_stop) in ${ms(deleteAllMs, 0)}; qemus left: ${(await qemuPidsMentioning(agent.stateDir)).length}`);

    const burst: Array<{ uuid: string; record: Json }> = [];
    for (let i = 0; i < n; i++) {
      const uuid = randomUUID();
      burst.push({ uuid, record: vmRecord(uuid, `burst-${i}`, await makeHaltDisk(disks, uuid)) });
    }
    const burstTicks0 = (await cpuTicks(agent.pid)) ?? Number.NaN;
    const tb0Wall = Date.now();
    const tb0 = performance.now();
    const created = await Promise.all(burst.map((b) => repo.create(b.uuid, b.record)));
    if (created.some((ok) => !ok)) throw new Error('a burst VM already existed');
    const burstIds = burst.map((b) => b.uuid);
    await watch.waitStatus(burstIds, 'RUNNING', 60_000);
    const lastOf = (status: string): number => Math.max(...burstIds.map((u) => (watch.seenAt(u, status) ?? Number.NaN) - tb0));
    const burstAllRunning = lastOf('RUNNING');
    const burstAllStarting = lastOf('STARTING');
    const burstAgentCpuMs = ((((await cpuTicks(agent.pid)) ?? Number.NaN) - burstTicks0) / hz) * 1000;
    const burstPerVm = summarize(burstIds.map((u) => (watch.seenAt(u, 'RUNNING') as number) - tb0));
    log(`    burst: ${n} puts at once -> all STARTING ${ms(burstAllStarting, 0)}, all RUNNING ${ms(burstAllRunning, 0)} (per VM p50 ${ms(burstPerVm.p50, 0)}); agent CPU ${burstAgentCpuMs.toFixed(0)} ms`);
    log();

    // (d) idle cost with n VMs running
    await sleep(SETTLE_MS);
    const running = await qemuPidsMentioning(agent.stateDir);
    const etcdPid = (await pidsMentioning(/(^|\/)etcd$/, etcdDir))[0];
    const sampleAll = async (): Promise<{ agent: number | null; qemus: number; etcd: number | null }> => {
      let q = 0;
      for (const pid of running) q += (await cpuTicks(pid)) ?? 0;
      return { agent: await cpuTicks(agent.pid), qemus: q, etcd: etcdPid !== undefined ? await cpuTicks(etcdPid) : null };
    };
    // Two back-to-back windows from SETTLE_MS after the burst; the worse one is held against the
    // target. V8 shrinks the heap with a major GC some 10-20 s after a burst of allocation, which
    // lands in one of them (RSS drops by a third at that moment).
    const windows: Array<{ agentPct: number; qemusPct: number; etcdPct: number | null; rssStartKiB: number; rssEndKiB: number }> = [];
    for (let w = 0; w < 2; w++) {
      const rssStart = (await rssKiB(agent.pid)) ?? Number.NaN;
      const c0 = await sampleAll();
      const w0 = performance.now();
      await sleep(IDLE_WINDOW_MS);
      const c1 = await sampleAll();
      const wall = (performance.now() - w0) / 1000;
      if (c0.agent === null || c1.agent === null) throw new Error('the agent process went away');
      const pct = (a: number, b: number): number => ((b - a) / hz / wall) * 100;
      windows.push({
        agentPct: pct(c0.agent, c1.agent),
        qemusPct: pct(c0.qemus, c1.qemus),
        etcdPct: c0.etcd !== null && c1.etcd !== null ? pct(c0.etcd, c1.etcd) : null,
        rssStartKiB: rssStart,
        rssEndKiB: (await rssKiB(agent.pid)) ?? Number.NaN,
      });
    }
    const [w1, w2] = windows as [(typeof windows)[0], (typeof windows)[0]];
    const cpuIdlePct = w1.agentPct;
    const cpuIdleSteadyPct = w2.agentPct;
    const qemusCpuPct = w1.qemusPct;
    const etcdCpuPct = w1.etcdPct;
    const rssIdle = Math.max(w1.rssStartKiB, w1.rssEndKiB, w2.rssEndKiB);
    let qemusRss = 0;
    for (const pid of running) qemusRss += (await rssKiB(pid)) ?? 0;
    const mib = (k: number): string => `${(k / 1024).toFixed(1)} MiB`;
    log(`(d) ${running.length} VMs running; two ${IDLE_WINDOW_MS / 1000} s idle windows from ${SETTLE_MS / 1000} s after the burst (CLK_TCK ${hz}, so 0.1% resolution):`);
    log(`    agent CPU ${w1.agentPct.toFixed(2)}% of one core in the first window, ${w2.agentPct.toFixed(2)}% in the second`);
    log(`    agent RSS ${mib(w1.rssStartKiB)} -> ${mib(w1.rssEndKiB)} -> ${mib(w2.rssEndKiB)} (peak ${mib(rssIdle)}; ${mib(rssBeforeVms)} before any VM)`);
    log(`    for context: the ${running.length} qemus ${qemusCpuPct.toFixed(1)}% CPU, ${(qemusRss / 1024).toFixed(0)} MiB RSS in all; etcd ${etcdCpuPct === null ? 'n/a' : `${etcdCpuPct.toFixed(2)}%`} CPU`);
    await noteLoad('end', running.length);
    log();

    const targets: Results['targets'] = [
      {
        target: 'put->RUNNING p50 within 20 ms of floor p50',
        figure: `${sRunning.p50.toFixed(1)} ms vs ${floor.p50.toFixed(1)} ms (+${(sRunning.p50 - floor.p50).toFixed(1)} ms)`,
        pass: sRunning.p50 - floor.p50 <= 20,
      },
      { target: 'put->RUNNING p99 < 150 ms', figure: `${sRunning.p99.toFixed(1)} ms`, pass: sRunning.p99 < 150 },
      { target: `burst of ${n}: all RUNNING within 3 s`, figure: `${burstAllRunning.toFixed(0)} ms`, pass: burstAllRunning <= 3000 },
      { target: 'agent RSS < 120 MB (MiB, peak of 3 samples)', figure: `${(rssIdle / 1024).toFixed(1)} MiB`, pass: rssIdle / 1024 < 120 },
      {
        target: 'agent idle CPU < 2% of a core (worse window)',
        figure: `${Math.max(cpuIdlePct, cpuIdleSteadyPct).toFixed(2)}% (windows: ${cpuIdlePct.toFixed(2)}%, ${cpuIdleSteadyPct.toFixed(2)}%)`,
        pass: Math.max(cpuIdlePct, cpuIdleSteadyPct) < 2,
      },
    ];
    log('summary');
    log(table([
      ['figure', 'p50', 'p99', 'min', 'max'],
      ['(a)  floor: spawn -> QMP greeting (-S)', ms(floor.p50), ms(floor.p99), ms(floor.min), ms(floor.max)],
      ['(a)  floor: spawn -> first QMP answer', ms(floorAnswered.p50), ms(floorAnswered.p99), ms(floorAnswered.min), ms(floorAnswered.max)],
      ['(a2) drover argv direct: -> greeting', ms(argvGreeting.p50), ms(argvGreeting.p99), ms(argvGreeting.min), ms(argvGreeting.max)],
      ['(a2) drover argv direct: -> running', ms(argvRunning.p50), ms(argvRunning.p99), ms(argvRunning.min), ms(argvRunning.max)],
      ['(a3) QemuHypervisor.start: -> spawned', ms(hvSpawned.p50), ms(hvSpawned.p99), ms(hvSpawned.min), ms(hvSpawned.max)],
      ['(a3) QemuHypervisor.start: -> resolved', ms(hvResolved.p50), ms(hvResolved.p99), ms(hvResolved.min), ms(hvResolved.max)],
      ['(a4) same, VMs kept running: -> resolved', ms(hvKeepResolved.p50), ms(hvKeepResolved.p99), ms(hvKeepResolved.min), ms(hvKeepResolved.max)],
      ['(b)  put -> STARTING (watch)', ms(sStarting.p50), ms(sStarting.p99), ms(sStarting.min), ms(sStarting.max)],
      ['(b)  put -> RUNNING (watch)', ms(sRunning.p50), ms(sRunning.p99), ms(sRunning.min), ms(sRunning.max)],
    ]));
    log(`(c)  burst of ${n}: all STARTING ${ms(burstAllStarting, 0)}, all RUNNING ${ms(burstAllRunning, 0)}`);
    log(`(d)  with ${running.length} VMs: agent RSS peak ${mib(rssIdle)}, idle CPU ${cpuIdlePct.toFixed(2)}% then ${cpuIdleSteadyPct.toFixed(2)}% of one core`);
    log(`(p99 is nearest-rank: with ${n} samples it is the ${Math.ceil(0.99 * n)}th smallest${n <= 100 ? ', i.e. the maximum' : ''})`);
    log();
    log('targets (information only)');
    log(table([['target', 'figure', ''], ...targets.map((t) => [t.target, t.figure, t.pass ? 'PASS' : 'MISS'])]));

    if (opts.json) {
      const results: Results = {
        machine,
        count: n,
        floor,
        floorAnswered,
        droverArgvGreeting: argvGreeting,
        droverArgvRunning: argvRunning,
        hypervisorSpawned: hvSpawned,
        hypervisorResolved: hvResolved,
        hypervisorKeptSpawned: hvKeepSpawned,
        hypervisorKeptResolved: hvKeepResolved,
        agentReadyMs,
        putToStarting: sStarting,
        putToRunning: sRunning,
        firstPutToRunning: putToRunning[0] ?? Number.NaN,
        breakdown: parted,
        breakdownFromAgentLog: fromLog,
        deleteAllMs,
        burstAllStartingMs: burstAllStarting,
        burstAllRunningMs: burstAllRunning,
        burstPerVm,
        rssIdleKiB: rssIdle,
        rssBeforeVmsKiB: rssBeforeVms,
        cpuIdlePct,
        cpuIdleSteadyPct,
        idleWindows: windows,
        qemusCpuPct,
        qemusRssKiB: qemusRss,
        etcdCpuPct,
        droverArgv: argvRuns.argv,
        loads,
        seqAgentCpuMsPerStart: seqAgentCpuMs / n,
        burstAgentCpuMs,
        targets,
      };
      await writeFile(opts.json, `${JSON.stringify({ ...results, raw: { putToStarting, putToRunning, parts, burstStarting: burstIds.map((u) => (watch.seenAt(u, 'STARTING') ?? Number.NaN) - tb0), burstRunning: burstIds.map((u) => (watch.seenAt(u, 'RUNNING') ?? Number.NaN) - tb0), burstSpawned: burstIds.map((u) => Date.parse(String((watch.records.get(u)?.runtime as { started_at?: string } | undefined)?.started_at)) - tb0Wall) } }, null, 2)}\n`);
    }
  } finally {
    await cleanup.run();
    const left = await qemuPidsMentioning(root);
    if (left.length > 0) console.error(`warning: ${left.length} qemu process(es) still mention ${root}: ${left.join(' ')}`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`start-latency: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
