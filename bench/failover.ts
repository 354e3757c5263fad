/**
 * Failover benchmark (issue 3): the time from the moment a host is frozen to
 * its failover VM RUNNING on another host, median of 5 runs, target < 30 s
 * (`make bench-failover`, or `node dist/bench/failover.js [--runs N]
 * [--hosts N] [--freeze agent|power-loss] [--lease-ttl S]
 * [--failover-margin S] [--election-ttl S] [--short] [--json FILE]`).
 *
 * What "frozen" means here (--freeze agent, the default): the host's
 * `drover agent` is stopped with SIGSTOP while its qemu and its fencing
 * watchdog run on. That is the case drover must survive on its own: an agent
 * wedged (or paused, or swapped out) on a host that still runs guests. The
 * watchdog notices that the agent stopped feeding its fence file and kills
 * the failover VM; the lease expires; the scheduler (in a surviving agent)
 * waits failover_margin and moves the VM. `--freeze power-loss` kills the
 * agent, its watchdog and its qemu with SIGKILL at once instead. (Freezing
 * the whole machine, qemu included, is not a case drover can handle alone:
 * nothing on that host can fence, so the frozen qemu keeps its disk locked.)
 *
 * Each run is independent: a fresh key prefix in one real etcd, N agents
 * (`bin/drover agent`, scheduler on in every one, drover's defaults for
 * every timing key unless a flag sets it), and one failover VM booting the
 * marker guest (scripts/build-guest.sh, initrd-disk-marker.gz) from a raw
 * disk on the agents' shared_storage. Odd runs put the VM on the scheduler
 * leader's host (the frozen agent also leads), even runs on another host.
 * Every phase is stamped in this process: the old qemu's death (polled in
 * /proc), and, by one etcd watch on the run's prefix, the liveness key's
 * deletion, the host record turning DEAD, the VM's SCHEDULED, STARTING and
 * RUNNING on the new host. Then the new guest's first disk record, and the
 * disk proof that the two copies never ran at once (test/helpers/disk-marker.ts).
 *
 * The physical floor printed next to each run: when the lease actually
 * expired (between 2/3 and 1 TTL after the freeze, depending on when the
 * agent's last keepalive was answered) + failover_margin + a bare qemu
 * start (drover's argv for the same VM, spawned directly, spawn -> QMP
 * "running", measured in the same run). Everything started here is removed
 * at the end, also on error or Ctrl-C. Exits 0 unless something broke.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { agentConfigSchema } from '../src/config/agent-config.js';
import { keySpace, type KeySpace } from '../src/contract/keys.js';
import { vmSpecSchema } from '../src/contract/vm-record.js';
import { buildQemuArgs } from '../src/hypervisor/qemu/build-qemu-args.js';
import { runPaths } from '../src/hypervisor/qemu/run-dir.js';
import type { KvStore } from '../src/store/kv-store.js';
import { VmRepository } from '../src/store/vm-repository.js';
import { pidAlive } from '../test/helpers/agent-harness.js';
import { assertSequentialBoots, createMarkerDisk, markerVmSpec, readMarkerDisk, waitForMarkers } from '../test/helpers/disk-marker.js';
import { ensureGuest, type GuestFiles } from '../test/helpers/guest.js';
import { killLeftovers, startAgentProc, stopAgentProc, waitAlive, type AgentProc } from './lib/agent-process.js';
import { startBenchEtcd } from './lib/bench-etcd.js';
import { Cleanup } from './lib/cleanup.js';
import { cpuBusyPct, machineInfo } from './lib/procfs.js';
import { PrefixTimeline, type TimedEvent } from './lib/prefix-timeline.js';
import { probeQemu } from './lib/qmp-probe.js';
import { benchOptions } from './lib/options.js';
import { table } from './lib/stats.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DROVER_BIN = join(REPO_ROOT, 'bin', 'drover');
const QEMU = 'qemu-system-x86_64';
const TARGET_MS = 30_000;

type FreezeMode = 'agent' | 'power-loss';

interface Options {
  runs: number;
  hosts: number;
  freeze: FreezeMode;
  /** Only the keys given on the command line; drover's defaults otherwise. */
  timing: { lease_ttl?: number; failover_margin?: number; election_ttl?: number };
  json?: string;
}

function readOptions(args: string[]): Options {
  const v = benchOptions(
    'node dist/bench/failover.js [--runs 5] [--hosts 3] [--freeze agent|power-loss] [--lease-ttl S] [--failover-margin S] [--election-ttl S] [--short] [--json FILE]',
    {
      runs: { type: 'string' },
      hosts: { type: 'string' },
      freeze: { type: 'string' },
      'lease-ttl': { type: 'string' },
      'failover-margin': { type: 'string' },
      'election-ttl': { type: 'string' },
      short: { type: 'boolean' },
      json: { type: 'string' },
    },
    args,
  );
  const freeze = v.freeze ?? 'agent';
  if (freeze !== 'agent' && freeze !== 'power-loss') throw new Error('--freeze is agent or power-loss');
  const timing: Options['timing'] = {
    ...(v.short ? { lease_ttl: 6, failover_margin: 1, election_ttl: 2 } : {}), // the integration tests' settings
    ...(v['lease-ttl'] !== undefined ? { lease_ttl: Number.parseInt(v['lease-ttl'], 10) } : {}),
    ...(v['failover-margin'] !== undefined ? { failover_margin: Number(v['failover-margin']) } : {}),
    ...(v['election-ttl'] !== undefined ? { election_ttl: Number.parseInt(v['election-ttl'], 10) } : {}),
  };
  return {
    runs: v.runs === undefined ? 5 : Math.max(1, Number.parseInt(v.runs, 10)),
    hosts: v.hosts === undefined ? 3 : Math.max(2, Number.parseInt(v.hosts, 10)),
    freeze,
    timing,
    ...(v.json !== undefined ? { json: v.json } : {}),
  };
}

const log = (line = ''): void => console.log(line);
const sleep = (msec: number): Promise<void> => new Promise((r) => setTimeout(r, msec));
const s = (msec: number | undefined): string => (msec === undefined || !Number.isFinite(msec) ? 'n/a' : `${(msec / 1000).toFixed(2)} s`);

function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** All CPUs' busy share over `msec`, from /proc/stat. */
/** Phases in ms after the freeze (undefined: not seen). */
interface RunResult {
  run: number;
  victim: string;
  leader: string;
  victimLed: boolean;
  newHost: string;
  fenced?: number;
  leaseExpired?: number;
  dead?: number;
  scheduled?: number;
  starting?: number;
  running: number;
  guestWriting?: number;
  bareQemuStart: number;
  /** leaseExpired + margin + bareQemuStart. */
  floor: number;
  /** Guest clocks: old copy's last disk record -> new copy's first. */
  diskGapMs?: number;
  proof: string;
  cpuBusyBefore: number;
}

interface RunContext {
  opts: Options;
  root: string;
  kv: KvStore;
  endpoint: string;
  guest: GuestFiles;
  leaseTtl: number;
  margin: number;
  cleanup: Cleanup;
}

/** The scheduler leader's agent: the election key with the lowest create revision holds "<name>:<pid>". */
async function leaderPid(kv: KvStore, keys: KeySpace): Promise<number | null> {
  const { entries } = await kv.list(`${keys.prefix}/election/`);
  if (entries.length === 0) return null;
  const first = entries.reduce((a, b) => (BigInt(a.createRevision) <= BigInt(b.createRevision) ? a : b));
  const pid = Number(first.raw.slice(first.raw.lastIndexOf(':') + 1));
  return Number.isInteger(pid) ? pid : null;
}

async function bareQemuStart(dir: string, guest: GuestFiles): Promise<number> {
  const uuid = randomUUID();
  const disk = join(dir, 'probe.raw');
  await createMarkerDisk(disk);
  const paths = runPaths(join(dir, 'probe'), uuid);
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const spec = vmSpecSchema.parse({ vcpus: 1, memory: 96, vnc: 'none', ...markerVmSpec(guest, disk) });
  const argv = buildQemuArgs({ uuid, name: 'probe', spec, paths, accel: 'tcg', detectedFormats: ['raw'] });
  const r = await probeQemu(QEMU, argv, paths.qmpSocket, { untilRunning: true });
  return r.runningMs ?? Number.NaN;
}

async function oneRun(ctx: RunContext, run: number): Promise<RunResult> {
  const { opts, kv, guest } = ctx;
  const keys = keySpace(`/bench-failover/run-${run}`);
  const dir = join(ctx.root, `run-${run}`);
  const shared = join(dir, 'shared');
  await mkdir(shared, { recursive: true });
  const timeline = new PrefixTimeline(kv, `${keys.prefix}/`);
  await timeline.start();
  const agents: AgentProc[] = [];
  const teardown = async (): Promise<void> => {
    await Promise.all(agents.map((a) => stopAgentProc(a)));
    await killLeftovers(dir);
    await timeline.close();
  };
  ctx.cleanup.add(`run ${run}: agents, qemus, watchdogs`, teardown);
  try {
    const config = { prefix: keys.prefix, foreign_scope: 'state-dir', shared_storage: [shared], scheduler: true, log_level: 'warn', ...opts.timing };
    for (let h = 1; h <= opts.hosts; h++) agents.push(await startAgentProc(DROVER_BIN, dir, `hv${h}`, ctx.endpoint, config));
    await Promise.all(agents.map((a) => waitAlive(a, kv, keys.alive(a.name))));
    let lead: number | null = null;
    for (let i = 0; i < 100 && lead === null; i++) {
      lead = await leaderPid(kv, keys);
      if (lead === null) await sleep(100);
    }
    const leader = agents.find((a) => a.pid === lead);
    if (!leader) throw new Error(`no scheduler leader among the agents (election key pid ${String(lead)})`);
    // Odd runs: the VM on the leader's host (the frozen agent also leads); even runs: on another.
    const victim = run % 2 === 1 ? leader : agents.find((a) => a !== leader)!;

    const disk = join(shared, 'vm.raw');
    await createMarkerDisk(disk);
    const uuid = randomUUID();
    const vmKey = keys.vm(uuid);
    const record = { uuid, name: `failover-${run}`, host: victim.name, status: 'REQUESTED_NEW', spec: { vcpus: 1, memory: 96, vnc: 'none', ...markerVmSpec(guest, disk) } };
    if (!(await new VmRepository(kv, keys).create(uuid, record))) throw new Error(`VM ${uuid} exists`);
    const isVm = (status: string, onVictim: boolean) => (e: TimedEvent): boolean =>
      e.type === 'put' && e.key === vmKey && e.value?.status === status && (e.value.host === victim.name) === onVictim;
    const up = await timeline.waitFor(isVm('RUNNING', true), 0, 60_000, `the VM RUNNING on ${victim.name}`);
    const oldPid = (up.value?.runtime as { pid?: number } | undefined)?.pid;
    if (typeof oldPid !== 'number') throw new Error('the RUNNING record has no runtime.pid');
    // The guest booted and writes its disk (and the watchdog has long seen the VM in the fence file).
    await waitForMarkers(disk, (b) => b.length === 1 && b[0]!.records.length >= 3, 60_000, 'the first copy writing its disk');
    const bare = await bareQemuStart(dir, guest);
    const busy = await cpuBusyPct(1000);

    // Freeze.
    if (opts.freeze === 'agent') {
      victim.child.kill('SIGSTOP');
    } else {
      victim.child.kill('SIGKILL');
      await killLeftovers(victim.stateDir);
    }
    const t0 = performance.now();
    let fencedAt: number | undefined;
    const fencePoll = (async () => {
      while (fencedAt === undefined && performance.now() - t0 < 120_000) {
        if (!pidAlive(oldPid)) fencedAt = performance.now();
        else await sleep(10);
      }
    })();
    const moved = await timeline.waitFor((e) => e.type === 'put' && e.key === vmKey && e.value?.status === 'RUNNING' && e.value.host !== victim.name, t0, 120_000, 'the VM RUNNING on another host');
    const guestWriting = await waitForMarkers(disk, (b) => b.length >= 2, 60_000, 'the new copy writing its disk').then(
      () => performance.now() - t0, // the disk is polled every 100 ms
      () => undefined,
    );
    await fencePoll;
    const since = (e: TimedEvent | undefined): number | undefined => (e ? e.at - t0 : undefined);
    const leaseExpired = since(timeline.first((e) => e.type === 'delete' && e.key === keys.alive(victim.name), t0));
    let proof = 'ok';
    let diskGapMs: number | undefined;
    // Let the new copy write a few records, then read the proof off the disk.
    await waitForMarkers(disk, (b) => b.length >= 2 && b[1]!.records.length >= 3, 30_000, 'the new copy\'s records').catch(() => undefined);
    try {
      diskGapMs = assertSequentialBoots(await readMarkerDisk(disk), 2).gapsMs[0];
    } catch (err) {
      proof = `FAILED: ${(err as Error).message.split('\n')[0]}`;
    }
    return {
      run,
      victim: victim.name,
      leader: leader.name,
      victimLed: victim === leader,
      newHost: String(moved.value?.host),
      fenced: fencedAt === undefined ? undefined : fencedAt - t0,
      leaseExpired,
      dead: since(timeline.first((e) => e.type === 'put' && e.key === keys.host(victim.name) && e.value?.status === 'DEAD', t0)),
      scheduled: since(timeline.first(isVm('SCHEDULED', false), t0)),
      starting: since(timeline.first(isVm('STARTING', false), t0)),
      running: moved.at - t0,
      guestWriting,
      bareQemuStart: bare,
      floor: (leaseExpired ?? Number.NaN) + ctx.margin * 1000 + bare,
      diskGapMs,
      proof,
      cpuBusyBefore: busy,
    };
  } finally {
    await teardown();
  }
}

async function main(): Promise<void> {
  const opts = readOptions(process.argv.slice(2));
  const cleanup = new Cleanup().onSignals();
  const defaults = agentConfigSchema.parse({ name: 'defaults', state_dir: '/defaults' });
  const leaseTtl = opts.timing.lease_ttl ?? defaults.lease_ttl;
  const margin = opts.timing.failover_margin ?? defaults.failover_margin;
  const electionTtl = opts.timing.election_ttl ?? defaults.election_ttl;

  const root = await mkdtemp(join(tmpdir(), 'drover-bench-failover-'));
  cleanup.add('remove the temp dir', () => rm(root, { recursive: true, force: true }));
  cleanup.add('kill leftover qemus and watchdogs', () => killLeftovers(root));
  try {
    const machine = await machineInfo(QEMU, REPO_ROOT);
    log('drover failover benchmark');
    log(table([
      ['machine', ''],
      ['CPU', `${machine.cpuModel}, ${machine.cores} cores, ${machine.ramMiB} MiB`],
      ['kernel', machine.kernel],
      ['qemu', `${machine.qemu}, TCG`],
      ['etcd / node', `${machine.etcd} / ${machine.node}`],
      ['drover', machine.drover],
    ]));
    const timingSource = Object.keys(opts.timing).length === 0 ? "drover's defaults" : `set by flags: ${JSON.stringify(opts.timing)}`;
    log(`settings: lease_ttl ${leaseTtl} s, failover_margin ${margin} s, election_ttl ${electionTtl} s (${timingSource}); ${opts.hosts} agents, scheduler in each; freeze = ${opts.freeze === 'agent' ? 'SIGSTOP of the agent (qemu and watchdog live on)' : 'SIGKILL of agent, watchdog and qemu (power loss)'}`);
    log(`fencing: the watchdog kills the VM once the agent's fence file is ${((2 / 3) * leaseTtl).toFixed(1)} s (2/3 TTL) stale`);
    log(`[CPUs ${(await cpuBusyPct()).toFixed(0)}% busy before the first run]`);
    log();

    const guest = await ensureGuest();
    const { endpoint, kv } = await startBenchEtcd(root, cleanup);
    const ctx: RunContext = { opts, root, kv, endpoint, guest, leaseTtl, margin, cleanup };

    const results: RunResult[] = [];
    for (let run = 1; run <= opts.runs; run++) {
      const r = await oneRun(ctx, run);
      results.push(r);
      log(
        `run ${run}: ${r.victim}${r.victimLed ? ' (leader)' : ''} frozen -> RUNNING on ${r.newHost} after ${s(r.running)} ` +
          `(fenced ${s(r.fenced)}, lease expired ${s(r.leaseExpired)}, DEAD ${s(r.dead)}, SCHEDULED ${s(r.scheduled)}, STARTING ${s(r.starting)}); ` +
          `floor ${s(r.floor)}; new guest writing ${s(r.guestWriting)}; disk proof ${r.proof}${r.diskGapMs !== undefined ? ` (gap ${s(r.diskGapMs)})` : ''}; CPUs ${r.cpuBusyBefore.toFixed(0)}% busy before`,
      );
      if (run < opts.runs) await sleep(2000);
    }
    log();

    const col = (f: (r: RunResult) => number | undefined): number[] => results.map((r) => f(r) ?? Number.NaN);
    const rows: Array<[string, (r: RunResult) => number | undefined]> = [
      ['freeze -> old qemu dead (fence)', (r) => r.fenced],
      ['freeze -> lease expired (alive key deleted)', (r) => r.leaseExpired],
      ['lease expired -> host DEAD (failover_margin)', (r) => (r.dead !== undefined && r.leaseExpired !== undefined ? r.dead - r.leaseExpired : undefined)],
      ['DEAD -> SCHEDULED on the new host (placement)', (r) => (r.scheduled !== undefined && r.dead !== undefined ? r.scheduled - r.dead : undefined)],
      ['SCHEDULED -> STARTING (agent claims, spawns)', (r) => (r.starting !== undefined && r.scheduled !== undefined ? r.starting - r.scheduled : undefined)],
      ['STARTING -> RUNNING (QMP running)', (r) => (r.starting !== undefined ? r.running - r.starting : undefined)],
      ['freeze -> RUNNING elsewhere', (r) => r.running],
      ['floor: lease expired + margin + bare qemu start', (r) => r.floor],
      ['drover above the floor', (r) => r.running - r.floor],
      ['bare qemu start (spawn -> QMP running)', (r) => r.bareQemuStart],
      ['freeze -> new guest writing its disk', (r) => r.guestWriting],
      ['old copy last write -> new copy first (guest clocks)', (r) => r.diskGapMs],
    ];
    const fmt = (v: number): string => (Number.isFinite(v) ? (Math.abs(v) < 1000 ? `${v.toFixed(0)} ms` : `${(v / 1000).toFixed(2)} s`) : 'n/a');
    log('phases (per run, then the median)');
    log(table([
      ['phase', ...results.map((r) => `run ${r.run}${r.victimLed ? '*' : ''}`), 'median'],
      ...rows.map(([name, f]) => [name, ...col(f).map(fmt), fmt(median(col(f)))]),
    ]));
    log('(* the frozen agent was also the scheduler leader)');
    const med = median(col((r) => r.running));
    log();
    log(`design bound: lease_ttl + failover_margin + bare qemu start = ${leaseTtl} + ${margin} s + ${fmt(median(col((r) => r.bareQemuStart)))} = ${s(leaseTtl * 1000 + margin * 1000 + median(col((r) => r.bareQemuStart)))}`);
    log(`target: median freeze -> RUNNING elsewhere < 30 s: ${s(med)} ${med < TARGET_MS ? 'PASS' : 'MISS'}`);
    const broken = results.filter((r) => r.proof !== 'ok');
    if (broken.length > 0) log(`DISK PROOF FAILED in run(s) ${broken.map((r) => r.run).join(', ')}: two copies may have run at once`);

    if (opts.json) {
      await writeFile(opts.json, JSON.stringify({ machine, settings: { leaseTtl, margin, electionTtl, hosts: opts.hosts, freeze: opts.freeze, timing: opts.timing }, results, medianRunningMs: med }, null, 2));
      log(`(all figures written to ${opts.json})`);
    }
    if (broken.length > 0) process.exitCode = 1;
  } finally {
    await cleanup.run();
  }
}

main().catch((err: unknown) => {
  console.error(`failover benchmark failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});
