/**
 * Cost of collection as VMs grow (issue 5), `make bench-collection` or
 * `node dist/bench/collection.js [--counts 10,50,100] [--interval S]
 * [--window S] [--batch N] [--min-available MIB] [--guest linux|halt]
 * [--json FILE]`; `--report FILE` prints the table and verdicts of a saved --json run.
 *
 * A real etcd and one `bin/drover agent` (TCG, `vm_stats_interval` =
 * `--interval`, 2 s by default so a window holds many intervals; every other
 * key at drover's default but `log_level = "warn"` and
 * `foreign_scope = "state-dir"`). Test guests (build/guest: vmlinuz +
 * initrd.gz, 96 MiB, 1 vCPU, no NIC, no VNC) are created as VM records
 * (REQUESTED_NEW, create-if-absent), `--batch` at a time, each batch RUNNING
 * before the next, up to each count in turn; a batch is not started while
 * the machine's MemAvailable is under `--min-available` MiB (the run stops
 * there and says so).
 *
 * At each count, after the guests have settled: over `--window` seconds the
 * agent's CPU time (utime+stime of /proc/PID/stat, all threads) divided by
 * the number of stats intervals in the window, raw and minus the same figure
 * measured before any VM existed (the idle baseline: heartbeats, lease
 * keep-alives, the bench's etcd watch), then divided per VM; the agent's
 * VmRSS (highest of one sample per interval). Measured the same way over the
 * same window, the floor: bench/lib/proc-floor.ts, a bare Node process that
 * reads and parses the same /proc and sysfs files for the same qemu pids
 * once per interval. Targets: linear or better (the agent CPU each added VM
 * costs between the last two counts at most 1.25x what it cost between the
 * first two, plus one clock tick per window of slack), under 1 ms of agent CPU per VM per interval
 * (baseline subtracted), agent RSS under 150 MB at 100 VMs. Everything
 * started is removed at the end, also on error or Ctrl-C. Exits 0 unless
 * something broke.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { agentConfigSchema } from '../src/config/agent-config.js';
import { keySpace } from '../src/contract/keys.js';
import { freePort } from '../src/embedded/etcd-process.js';
import { VmRepository } from '../src/store/vm-repository.js';
import { ensureGuest, guestSpec } from '../test/helpers/guest.js';
import { killLeftovers, startAgentProc, stopAgentProc, waitAlive } from './lib/agent-process.js';
import { startBenchEtcd } from './lib/bench-etcd.js';
import { Cleanup } from './lib/cleanup.js';
import { makeHaltDisk } from './lib/halt-disk.js';
import { clockTicksPerSecond, cpuBusyPct, cpuTicks, machineInfo, qemuPidsMentioning, rssKiB } from './lib/procfs.js';
import { startProcFloor } from './lib/proc-floor.js';
import { benchOptions, usageError } from './lib/options.js';
import { table } from './lib/stats.js';
import { StatusWatch } from './lib/status-watch.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DROVER_BIN = join(REPO_ROOT, 'bin', 'drover');
const PREFIX = '/bench-collection';
const HOST = 'bench';
const TARGET_MS_PER_VM = 1;
const TARGET_RSS_MB = 150;
const LINEAR_SLACK = 1.25;

const values = benchOptions(
  'node dist/bench/collection.js [--counts 10,50,100] [--interval S] [--window S] [--batch N] [--min-available MIB] [--guest linux|halt] [--json FILE] [--report FILE]',
  {
    counts: { type: 'string', default: '10,50,100' },
    interval: { type: 'string', default: '2' },
    window: { type: 'string', default: '30' },
    batch: { type: 'string', default: '10' },
    'min-available': { type: 'string', default: '3072' },
    guest: { type: 'string', default: 'linux' },
    json: { type: 'string' },
    report: { type: 'string' },
  },
);

const counts = (values.counts ?? '').split(',').map(Number);
if (counts.length === 0 || counts.some((n, i) => !Number.isInteger(n) || n < 1 || (i > 0 && n <= (counts[i - 1] as number)))) usageError('--counts must be rising positive integers, e.g. 10,50,100.');
const intervalS = Number(values.interval);
const windowS = Number(values.window);
const batch = Number(values.batch);
const minAvailableMiB = Number(values['min-available']);
if (!(intervalS >= 1)) usageError('--interval must be at least 1 second.');
if (!(windowS >= 2 * intervalS)) usageError('--window must hold at least two intervals.');
if (!Number.isInteger(batch) || batch < 1) usageError('--batch must be a positive integer.');
if (!(minAvailableMiB >= 0)) usageError('--min-available must be a number of MiB.');
const guestKind = values.guest;
if (guestKind !== 'linux' && guestKind !== 'halt') usageError('--guest must be linux or halt.');

const log = (line = ''): void => void process.stdout.write(`${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function memAvailableMiB(): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8');
  return Number(/^MemAvailable:\s+(\d+)/m.exec(text)?.[1] ?? 0) / 1024;
}

interface Window {
  vms: number;
  seconds: number;
  intervals: number;
  agentMsPerInterval: number;
  agentRssPeakKiB: number;
  floorMsPerInterval: number;
  floorRssPeakKiB: number;
  qemuRssKiB: number;
  qemuCpuShare: number;
  machineBusy: number;
  memAvailableMiB: number;
  /** vm_stats collections the agent completed in the window (drover_agent_collect_seconds_count). */
  vmStatsRuns: number;
  /** The agent's CPU over the window divided by vmStatsRuns: per collection actually made. */
  agentMsPerRun: number;
  /** Mean wall time of one run of each collection task over the window, from drover_agent_collect_seconds. */
  collectWallMs: Record<string, number>;
}

type CollectTimes = Record<string, { sum: number; count: number }>;

/** drover_agent_collect_seconds' _sum and _count per task, scraped from the agent's /metrics. */
async function collectTimes(port: number): Promise<CollectTimes> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: CollectTimes = {};
  for (const m of text.matchAll(/^drover_agent_collect_seconds_(sum|count)\{task="([a-z_]+)"\} (\S+)$/gm)) {
    const task = (out[m[2] as string] ??= { sum: 0, count: 0 });
    task[m[1] as 'sum' | 'count'] = Number(m[3]);
  }
  return out;
}

function meanMs(a: { sum: number; count: number } | undefined, b: { sum: number; count: number } | undefined): number {
  if (!b) return Number.NaN;
  const n = b.count - (a?.count ?? 0);
  return n > 0 ? ((b.sum - (a?.sum ?? 0)) * 1000) / n : Number.NaN;
}

/** The table and the verdicts, from the idle baseline and the windows (also for --report on a saved --json). */
function report(baseline: Window, windows: readonly Window[], intervalS: number, tickMs: number): Array<[string, boolean | null, string]> {
  const perVm = (w: Window): number => (w.agentMsPerInterval - baseline.agentMsPerInterval) / w.vms;
  const floorPerVm = (w: Window): number => (w.floorMsPerInterval - baseline.floorMsPerInterval) / w.vms;
  // The agent kept its interval when one vm_stats run took less than the interval and it made
  // at least 80% as many runs as intervals (the next run is timed from the end of the last, so a
  // 100 ms run makes 28-29 runs in 30 intervals); otherwise it got too little CPU and
  // "per interval" figures mean nothing.
  const keptUp = (w: Window): boolean => w.vmStatsRuns >= 0.8 * w.intervals && (w.collectWallMs['vm_stats'] ?? Infinity) < intervalS * 1000;
  log();
  log(`agent CPU per stats interval (${intervalS} s); idle baseline ${baseline.agentMsPerInterval.toFixed(2)} ms/interval, RSS ${(baseline.agentRssPeakKiB / 1024).toFixed(1)} MiB; one clock tick = ${tickMs} ms`);
  log(
    table([
      ['VMs', 'vm_stats runs', 'agent ms/interval', 'minus idle', 'per VM', 'floor ms/interval', 'floor per VM', 'agent RSS MiB', 'floor RSS MiB', 'vm_stats wall ms', 'machine busy'],
      ...windows.map((w) => [
        String(w.vms),
        `${w.vmStatsRuns} / ${w.intervals.toFixed(0)}${keptUp(w) ? '' : ' BEHIND'}`,
        w.agentMsPerInterval.toFixed(2),
        (w.agentMsPerInterval - baseline.agentMsPerInterval).toFixed(2),
        perVm(w).toFixed(3),
        w.floorMsPerInterval.toFixed(2),
        floorPerVm(w).toFixed(3),
        (w.agentRssPeakKiB / 1024).toFixed(1),
        (w.floorRssPeakKiB / 1024).toFixed(1),
        (w.collectWallMs['vm_stats'] ?? Number.NaN).toFixed(1),
        `${(w.machineBusy * 100).toFixed(0)}%`,
      ]),
    ]),
  );
  log();
  const verdicts: Array<[string, boolean | null, string]> = [];
  const kept = windows.filter(keptUp);
  const behind = windows.filter((w) => !keptUp(w)).map((w) => w.vms);
  const note = behind.length ? `; not judged at ${behind.join(', ')} VMs: the agent fell behind its interval (too little CPU)` : '';
  if (kept.length >= 3) {
    // The agent's CPU each added VM costs (raw figures, no baseline), between consecutive counts;
    // linear or better: the last step's cost per added VM at most LINEAR_SLACK x the first step's,
    // plus one clock tick per window of quantization on each figure.
    const steps = kept.slice(1).map((w, i) => {
      const prev = kept[i] as Window;
      const slack = (tickMs / w.intervals + tickMs / prev.intervals) / (w.vms - prev.vms);
      return { from: prev.vms, to: w.vms, ms: (w.agentMsPerInterval - prev.agentMsPerInterval) / (w.vms - prev.vms), slack };
    });
    const firstStep = steps[0]!;
    const lastStep = steps[steps.length - 1]!;
    const ok = lastStep.ms <= LINEAR_SLACK * Math.max(firstStep.ms, 0) + firstStep.slack + lastStep.slack;
    verdicts.push(['linear or better in VM count', ok, `per added VM ${steps.map((st) => `${st.ms.toFixed(3)} ms (${st.from}->${st.to})`).join(', ')}${note}`]);
  } else {
    verdicts.push(['linear or better in VM count', null, `needs three counts where the agent kept up${note}`]);
  }
  const worstPerVm = kept.length ? Math.max(...kept.map(perVm)) : Number.NaN;
  verdicts.push([`< ${TARGET_MS_PER_VM} ms agent CPU per VM per interval`, kept.length ? worstPerVm < TARGET_MS_PER_VM : null, `worst ${worstPerVm.toFixed(3)} ms${note}`]);
  const at100 = windows.find((w) => w.vms === 100);
  const rssMb = at100 ? (at100.agentRssPeakKiB * 1024) / 1e6 : Number.NaN;
  verdicts.push([`agent RSS < ${TARGET_RSS_MB} MB at 100 VMs`, at100 ? rssMb < TARGET_RSS_MB : null, at100 ? `${rssMb.toFixed(1)} MB (${(at100.agentRssPeakKiB / 1024).toFixed(1)} MiB)` : 'not measured']);
  log(table([['target', 'verdict', ''], ...verdicts.map(([what, ok, detail]) => [what, ok === null ? 'N/A' : ok ? 'PASS' : 'FAIL', detail])]));
  return verdicts;
}

async function main(): Promise<void> {
  if (values.report !== undefined) {
    // Only the table and verdicts, from a run saved with --json.
    const saved = JSON.parse(await readFile(values.report, 'utf8')) as { intervalS: number; baseline: Window; windows: Window[] };
    report(saved.baseline, saved.windows, saved.intervalS, 1000 / (await clockTicksPerSecond()));
    return;
  }
  const cleanup = new Cleanup().onSignals();
  const hz = await clockTicksPerSecond();
  const tickMs = 1000 / hz;
  try {
    const guest = await ensureGuest();
    const root = await mkdtemp(join(tmpdir(), 'drover-bench-collection-'));
    cleanup.add('remove the temp dir', () => rm(root, { recursive: true, force: true }));
    cleanup.add('kill leftover qemus', () => killLeftovers(root));
    const disks = join(root, 'disks');
    await mkdir(disks);

    const { endpoint: etcdEndpoint, kv } = await startBenchEtcd(root, cleanup);
    const keys = keySpace(PREFIX);
    const repo = new VmRepository(kv, keys);
    const watch = new StatusWatch(kv, keys);
    await watch.start();
    cleanup.add('close the watch', () => watch.close());

    const metricsPort = await freePort();
    const agentConfig: Record<string, unknown> = {
      prefix: PREFIX,
      log_level: 'warn',
      foreign_scope: 'state-dir',
      vm_stats_interval: intervalS,
      metrics_listen: `127.0.0.1:${metricsPort}`,
    };
    // The process check's interval, at drover's default: the floor reads /proc/PID/stat as often.
    const checkS = agentConfigSchema.parse({ name: HOST, state_dir: '/', ...agentConfig }).process_check_interval;
    const agent = await startAgentProc(DROVER_BIN, root, HOST, etcdEndpoint, agentConfig);
    cleanup.add('stop the agent', () => stopAgentProc(agent));
    await waitAlive(agent, kv, keys.host(HOST));

    const info = await machineInfo('qemu-system-x86_64', REPO_ROOT);
    log(`machine: ${info.cpuModel}, ${info.cores} cores, ${info.ramMiB} MiB, ${info.kernel}, ${info.qemu}, node ${info.node}, drover ${info.drover}`);
    log(`agent pid ${agent.pid}, config ${JSON.stringify(agentConfig)}`);
    log(
      `stats interval ${intervalS} s, window ${windowS} s (${Math.floor(windowS / intervalS)} intervals), guests of 96 MiB, 1 vCPU, TCG, ${batch} started at a time: ` +
        (guestKind === 'linux' ? 'the test guest (build/guest vmlinuz + initrd.gz, idle)' : 'a halting boot sector (cli; hlt)'),
    );
    log();

    /** One measurement window: the agent's and the floor's CPU and RSS over the same wall time. */
    const measure = async (vms: number): Promise<Window> => {
      const pids = await qemuPidsMentioning(root);
      const floor = startProcFloor(intervalS * 1000, checkS * 1000, agent.stateDir, pids.map((pid) => ({ pid, taps: [] })));
      await sleep(intervalS * 1000); // let the floor process start up before its window opens
      const busyP = cpuBusyPct(1000).then((pct) => pct / 100);
      const qemuTicks = async (): Promise<number> => (await Promise.all(pids.map(cpuTicks))).reduce<number>((a, b) => a + (b ?? 0), 0);
      const m0 = await collectTimes(metricsPort);
      const [a0, f0, q0] = [await cpuTicks(agent.pid), await cpuTicks(floor.pid), await qemuTicks()];
      const t0 = performance.now();
      let agentRss = 0;
      let floorRss = 0;
      while (performance.now() - t0 < windowS * 1000) {
        agentRss = Math.max(agentRss, (await rssKiB(agent.pid)) ?? 0);
        floorRss = Math.max(floorRss, (await rssKiB(floor.pid)) ?? 0);
        await sleep(Math.min(intervalS * 1000, windowS * 1000 - (performance.now() - t0)));
      }
      const [a1, f1, q1] = [await cpuTicks(agent.pid), await cpuTicks(floor.pid), await qemuTicks()];
      const m1 = await collectTimes(metricsPort);
      const seconds = (performance.now() - t0) / 1000;
      await floor.stop();
      if (a0 === null || a1 === null) throw new Error('the agent exited during a window');
      if (f0 === null || f1 === null) throw new Error('the floor reader exited during a window');
      const intervals = seconds / intervalS;
      const qemuRss = (await Promise.all(pids.map(rssKiB))).reduce<number>((a, b) => a + (b ?? 0), 0);
      const w: Window = {
        vms,
        seconds,
        intervals,
        agentMsPerInterval: ((a1 - a0) * tickMs) / intervals,
        agentRssPeakKiB: agentRss,
        floorMsPerInterval: ((f1 - f0) * tickMs) / intervals,
        floorRssPeakKiB: floorRss,
        qemuRssKiB: qemuRss,
        qemuCpuShare: ((q1 - q0) * tickMs) / 1000 / seconds,
        machineBusy: await busyP,
        memAvailableMiB: await memAvailableMiB(),
        vmStatsRuns: (m1['vm_stats']?.count ?? 0) - (m0['vm_stats']?.count ?? 0),
        agentMsPerRun: Number.NaN,
        collectWallMs: Object.fromEntries(Object.keys(m1).map((task) => [task, meanMs(m0[task], m1[task])])),
      };
      w.agentMsPerRun = w.vmStatsRuns > 0 ? ((a1 - a0) * tickMs) / w.vmStatsRuns : Number.NaN;
      log(
        `  ${vms} VMs: ${w.vmStatsRuns} vm_stats runs in ${intervals.toFixed(1)} intervals; agent ${w.agentMsPerInterval.toFixed(2)} ms CPU/interval, RSS ${(w.agentRssPeakKiB / 1024).toFixed(1)} MiB; ` +
          `floor ${w.floorMsPerInterval.toFixed(2)} ms/interval, RSS ${(w.floorRssPeakKiB / 1024).toFixed(1)} MiB; ` +
          `collect wall ${Object.entries(w.collectWallMs).map(([k, v]) => `${k} ${v.toFixed(2)} ms`).join(', ') || 'n/a'}; ` +
          `qemus ${(w.qemuCpuShare * 100).toFixed(0)}% of a core, ${(w.qemuRssKiB / 1024).toFixed(0)} MiB; machine ${(w.machineBusy * 100).toFixed(0)}% busy, ${w.memAvailableMiB.toFixed(0)} MiB available`,
      );
      return w;
    };

    log('idle baseline (no VM)');
    await sleep(2 * intervalS * 1000);
    const baseline = await measure(0);
    const windows: Window[] = [];
    const uuids: string[] = [];
    let stopped = '';
    for (const count of counts) {
      log(`starting guests up to ${count}`);
      while (uuids.length < count) {
        const avail = await memAvailableMiB();
        if (avail < minAvailableMiB) {
          stopped = `stopped at ${uuids.length} VMs: MemAvailable ${avail.toFixed(0)} MiB < --min-available ${minAvailableMiB} MiB`;
          break;
        }
        const ids: string[] = [];
        for (let i = 0; i < batch && uuids.length < count; i++) {
          const uuid = randomUUID();
          const spec =
            guestKind === 'linux'
              ? guestSpec(guest, 'idle', { vnc: 'none' })
              : { vcpus: 1, memory: 96, disks: [{ path: await makeHaltDisk(disks, uuid), format: 'raw' }], vnc: 'none' };
          const record = { uuid, name: `col-${uuids.length}`, host: HOST, status: 'REQUESTED_NEW', spec };
          if (!(await repo.create(uuid, record))) throw new Error(`VM ${uuid} already exists`);
          uuids.push(uuid);
          ids.push(uuid);
        }
        await watch.waitStatus(ids, 'RUNNING', 300_000);
      }
      if (stopped) {
        log(stopped);
        break;
      }
      // The guests boot (TCG) after RUNNING; let them settle into their idle loop.
      await sleep(15_000 + 200 * (count - (windows.at(-1)?.vms ?? 0)));
      windows.push(await measure(count));
    }

    const verdicts = report(baseline, windows, intervalS, tickMs);
    if (values.json) await writeFile(values.json, JSON.stringify({ machine: info, intervalS, windowS, checkS, agentConfig, baseline, windows, verdicts, stopped }, null, 2));
  } finally {
    await cleanup.run();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
