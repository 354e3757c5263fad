/**
 * Chaos scenario 2, one etcd (issue 16): etcd killed with SIGKILL and
 * started again on the same data dir and ports (src/embedded/etcd-process.ts)
 * CHAOS_ETCD_KILLS times (50 by default), down for a random 0.2-6 s (longer
 * than the agent's 5 s lease TTL at times), and compacted to its newest
 * revision after every other restart, so the watches' revisions are gone.
 * All under load: two agents, CHAOS_LANES VM lanes (lib/vm-lifecycle.ts)
 * and two steady VMs that must never be touched.
 *
 * What must hold: the steady VMs run on in the same qemu processes; the
 * agents are never restarted; after each return a request written to a
 * probe VM is acted on within 5 s (measured: lib/probe-vm.ts); every lane
 * VM reaches each end state exactly once (events, /proc, disk markers).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startCluster, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, guestSpec, type GuestFiles } from '../helpers/guest.js';
import { ChaosReport, chaosRng, chaosSize, keepLogs, sleep } from './lib/chaos-env.js';
import { EventTap } from './lib/event-tap.js';
import { QemuWatch } from './lib/qemu-watch.js';
import { probe } from './lib/probe-vm.js';
import { checkSteadyVms, startSteadyVms } from './lib/steady-vms.js';
import { checkVmRuns, runLanes, type VmRun } from './lib/vm-lifecycle.js';

const KILLS = chaosSize('CHAOS_ETCD_KILLS', 50);
const LANES = chaosSize('CHAOS_LANES', 2);
/** The issue's bound on the agents' resync after etcd returns. */
const RESYNC_LIMIT_MS = 5000;

/** SIGKILL to the etcd child (its pid file sits beside the data dir), resolved once it is gone. */
async function killEtcd(etcd: TestEtcd): Promise<void> {
  const pid = Number((await readFile(join(etcd.dir, 'data.pid'), 'utf8')).trim());
  process.kill(pid, 'SIGKILL');
  while (etcd.server.running) await sleep(10);
}

describe('chaos: etcd killed, restarted and compacted under load (real etcd, real agents, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let guest: GuestFiles;
  let watch: QemuWatch;
  let tap: EventTap;
  const agents: AgentProcess[] = [];

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    watch = new QemuWatch([cluster.dir]).start();
    tap = await EventTap.open(cluster.events);
    for (const name of ['hv1', 'hv2']) agents.push(await cluster.startAgent(name));
  });
  let passed = false;
  after(async () => {
    if (!passed && cluster) for (const d of [cluster.dir, etcd.dir]) await keepLogs(d, 'etcd-restarts');
    await tap?.close();
    await watch?.stop();
    if (etcd && !etcd.server.running) await etcd.server.start().catch(() => undefined);
    await cluster?.close();
    await etcd?.close();
  });

  it(`${KILLS} SIGKILLs of etcd, every other one followed by a compaction: running VMs untouched, agents resync within 5 s, no state change lost or doubled`, async (t) => {
    const rng = chaosRng();
    const report = new ChaosReport('etcd-restarts', rng.seed, { CHAOS_ETCD_KILLS: KILLS, CHAOS_LANES: LANES });
    const diskDir = join(cluster.dir, 'disks');
    await mkdir(diskDir);
    const steady = await startSteadyVms(cluster, ['hv1', 'hv2']);
    const probeVm = await cluster.createVm({ name: 'probe', spec: guestSpec(guest, 'idle', { vnc: 'none', stop_timeout: 5 }) as unknown as Record<string, unknown> }, 'hv1');
    await cluster.waitForStatus(probeVm, 'RUNNING', 120_000);

    let faulting = true;
    // Load on etcd itself besides the VM lanes: a writer of 20 puts a second.
    const writer = (async () => {
      for (let n = 0; faulting; n++) {
        await etcd.client.put(`${cluster.prefix}/chaos-load/k${n % 100}`).value(String(n)).then(() => report.count('load writes'), () => report.count('load writes refused'));
        await sleep(50);
      }
    })();
    const faults = (async () => {
      try {
        for (let i = 0; i < KILLS; i++) {
          await sleep(rng.int(500, 3000));
          await killEtcd(etcd);
          const down = rng.int(200, 6000);
          report.time('etcd down', down);
          await sleep(down);
          await etcd.server.start();
          report.count('etcd kills');
          if (i % 2 === 1) {
            // Writes, then a compaction to the newest revision before the
            // agents' watches have reconnected: they must resume from a
            // revision etcd no longer has, and resync instead.
            for (let n = 0; n < 5; n++) await etcd.client.put(`${cluster.prefix}/chaos-load/after-restart`).value(String(n));
            const { header } = await etcd.client.maintenance.status();
            await etcd.client.kv.compact({ revision: header.revision, physical: true });
            report.count('compactions');
          }
          const { writeMs, answerMs: took } = await probe(cluster, probeVm);
          report.time('etcd back -> request written', writeMs);
          report.time('request written -> acted on', took);
          if (took > RESYNC_LIMIT_MS) report.note(`after kill ${i + 1} the agent took ${took} ms to act on a request`);
          if ((i + 1) % 10 === 0) t.diagnostic(`${i + 1} etcd kills, ${report.get('vms cycled')} VMs cycled`);
        }
      } finally {
        faulting = false;
      }
    })();
    let runs: VmRun[];
    try {
      runs = await runLanes(
        { cluster, guest, diskDir, host: (lane) => (lane % 2 === 0 ? 'hv1' : 'hv2'), rng, report, watch, tap, requestTimeoutMs: 180_000 },
        LANES,
        () => !faulting,
      );
    } finally {
      faulting = false;
      await faults;
      await writer;
    }

    const problems = await checkVmRuns(runs, tap, watch);
    problems.push(...(await checkSteadyVms(cluster, steady, tap, watch)));
    for (const a of agents) if (a.child.exitCode !== null || a.child.signalCode !== null) problems.push(`agent ${a.name} exited (${a.child.exitCode ?? a.child.signalCode})`);
    const slow = report.timesOf('request written -> acted on').filter((ms) => ms > RESYNC_LIMIT_MS);
    report.count('vms checked', runs.length);
    report.count('events seen', tap.all().length);
    report.count('event tap re-lists (compactions)', tap.relists);
    report.count('problems', problems.length);
    await report.finish((l) => t.diagnostic(l));

    assert.deepEqual(problems, [], `running VMs untouched, agents never restarted, no state change lost or doubled (${problems.length} problems)`);
    assert.deepEqual(slow, [], `every request written after etcd's return was acted on within ${RESYNC_LIMIT_MS} ms`);
    assert.equal(report.get('etcd kills'), KILLS);
    passed = true;
  });
});
