/**
 * Chaos scenario 1 (issue 16): the agent killed with -9 CHAOS_KILLS times
 * (1000 by default) at random moments while VMs are created, stopped,
 * started and deleted, and started again after each kill on the same state
 * dir, as systemd would.
 *
 * Real etcd, the real `drover agent` (bin/drover), real qemu (TCG) booting
 * the marker guest. CHAOS_LANES VMs (3) go through their lives at once
 * (lib/vm-lifecycle.ts); each agent lives a random 0.1 s to
 * CHAOS_MAX_LIFE_MS (3 s) before its kill, so kills land in start-up,
 * adoption, reconcile passes, qemu spawns and record writes alike.
 *
 * What must hold: no VM is restarted by an agent (each VM ran exactly one
 * qemu process per start the test asked for, by /proc, and its disk shows
 * exactly that many boots, one after the other), no state change is lost or
 * doubled (one vm.started / vm.stopped / vm.deleted event per request, no
 * crash or restart event), every request reaches its end state, and the
 * agent leaves no fencing watchdog behind per restart.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startCluster, waitUntil, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { ChaosReport, chaosRng, chaosSize, keepLogs, sleep } from './lib/chaos-env.js';
import { EventTap } from './lib/event-tap.js';
import { QemuWatch } from './lib/qemu-watch.js';
import { checkVmRuns, runLanes, type VmRun } from './lib/vm-lifecycle.js';

const KILLS = chaosSize('CHAOS_KILLS', 1000);
const LANES = chaosSize('CHAOS_LANES', 3);
const MAX_LIFE_MS = chaosSize('CHAOS_MAX_LIFE_MS', 3000);

/** The fencing watchdogs running for a state dir (the agent starts one beside itself). */
async function watchdogsOf(stateDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const argv = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.includes('watchdog') && argv.includes(stateDir)) pids.push(Number(p));
  }
  return pids;
}

describe('chaos: the agent killed with -9 under load (real etcd, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let guest: GuestFiles;
  let watch: QemuWatch;
  let tap: EventTap;

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    watch = new QemuWatch([cluster.dir]).start();
    tap = await EventTap.open(cluster.events);
  });
  let passed = false;
  after(async () => {
    if (!passed && cluster) for (const d of [cluster.dir]) await keepLogs(d, 'agent-kills');
    await tap?.close();
    await watch?.stop();
    await cluster?.close();
    await etcd?.close();
  });

  it(`${KILLS} kill -9 of the agent while ${LANES} VMs at a time are created, stopped, started and deleted: no VM restarted, no state change lost or doubled`, async (t) => {
    const rng = chaosRng();
    const report = new ChaosReport('agent-kills', rng.seed, { CHAOS_KILLS: KILLS, CHAOS_LANES: LANES, CHAOS_MAX_LIFE_MS: MAX_LIFE_MS });
    const diskDir = join(cluster.dir, 'disks');
    await mkdir(diskDir);
    let agent: AgentProcess = await cluster.startAgent('hv1');
    const stateDir = agent.stateDir;
    let killing = true;
    const killer = (async () => {
      try {
        while (report.get('kills') < KILLS) {
          // Every other kill comes at a random moment after spawn (start-up,
          // adoption); the others at a random moment after the agent is up
          // (it holds the liveness key with its pid), so that an overloaded
          // machine, where start-up alone can take seconds, still sees work done.
          if (report.get('kills') % 2 === 1) {
            const spawned = Date.now();
            const pid = agent.child.pid;
            await waitUntil(async () => ((await cluster.kv.get(cluster.keys.alive('hv1')).catch(() => null))?.raw.includes(`"pid":${pid}`) ? true : undefined), 120_000, `agent pid ${pid} up`);
            report.time('agent spawn -> up', Date.now() - spawned);
          }
          await sleep(rng.int(100, MAX_LIFE_MS));
          const before = Date.now();
          await agent.kill('SIGKILL');
          report.count('kills');
          if (agent.child.signalCode !== 'SIGKILL') {
            throw new Error(`agent pid ${agent.child.pid} died before the kill (exit ${agent.child.exitCode}): ${(await readFile(agent.logFile, 'utf8')).split('\n').slice(-5).join(' | ')}`);
          }
          agent = await cluster.startAgent('hv1', { stateDir });
          report.time('kill -> new agent spawned', Date.now() - before);
          if (report.get('kills') % 50 === 0) t.diagnostic(`${report.get('kills')} kills, ${report.get('vms cycled')} VMs cycled`);
        }
      } finally {
        killing = false;
      }
    })();
    let runs: VmRun[];
    try {
      runs = await runLanes(
        { cluster, guest, diskDir, host: () => 'hv1', rng, report, watch, tap },
        LANES,
        () => !killing,
      );
    } catch (err) {
      report.note(`stopped early: ${(err as Error).message}`);
      await report.finish((l) => t.diagnostic(l));
      throw err;
    } finally {
      killing = false;
      await killer;
    }

    // The agent that is left works: a VM written now runs.
    const last = await cluster.createVm({ name: 'after-the-kills' }, 'hv1');
    await cluster.waitForStatus(last, 'RUNNING', 120_000);
    assert.equal(agent.child.exitCode, null, 'the last agent is running');

    const problems = await checkVmRuns(runs, tap, watch);
    report.count('vms checked', runs.length);
    report.count('qemu processes seen', watch.all().length);
    report.count('events seen', tap.all().length);
    report.count('problems', problems.length);
    const watchdogs = await watchdogsOf(stateDir);
    report.count('watchdogs left running', watchdogs.length);
    await report.finish((l) => t.diagnostic(l));

    assert.deepEqual(problems, [], `no VM restarted, no state change lost or doubled (${problems.length} problems)`);
    assert.ok(runs.length >= LANES, `every lane took at least one VM through its life (${runs.length} VMs)`);
    assert.ok(watchdogs.length <= 1, `one fencing watchdog at most for the state dir after ${KILLS} restarts, not ${watchdogs.length}`);
    passed = true;
  });
});
