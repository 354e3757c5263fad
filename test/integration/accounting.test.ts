/**
 * APEL accounting against real guests (issue 5; docs/accounting.md): a real
 * `drover agent` with fizzle_seconds 12 and a GOCDB site name, two real TCG
 * guests stopped by the user:
 *  - one that ran (spinning its vCPU) for longer than fizzle_seconds yields
 *    exactly one cloud usage record, in apel-archive/YYYYMMDD/ and in
 *    apel-outgoing/, whose start and end times bracket the real process's
 *    life, with its CPU seconds, vCPUs, memory and site;
 *  - one stopped a moment after the collector first measured it yields none,
 *    and the agent's log says it fizzled.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { procCpuSeconds, startCluster, waitUntil, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { BURN_CMDLINE, ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { checkCloudRecord, parseApelMessage } from '../observability/apel-message.js';

const FIZZLE = 12;
const SITE = 'DROVER-TEST-SITE';

/** Every record under `<state>/<dir>/*`, with its day folder. */
async function records(stateDir: string, dir: string): Promise<Array<{ day: string; fields: Map<string, string> }>> {
  const out: Array<{ day: string; fields: Map<string, string> }> = [];
  const root = join(stateDir, dir);
  for (const day of await readdir(root).catch(() => [] as string[])) {
    for (const file of await readdir(join(root, day))) {
      if (file.startsWith('.')) continue;
      const msg = parseApelMessage(await readFile(join(root, day, file), 'utf8'));
      assert.equal(`${msg.type}: ${msg.version}`, 'APEL-cloud-message: v0.4');
      for (const fields of msg.records) {
        checkCloudRecord(fields);
        out.push({ day, fields });
      }
    }
  }
  return out;
}

describe('APEL accounting of finished VMs (real etcd, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let agent: AgentProcess;
  let guest: GuestFiles;

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    agent = await cluster.startAgent('hv1', { config: { fizzle_seconds: FIZZLE, gocdb_sitename: SITE, vm_stats_interval: 1, process_check_interval: 0.5 } });
  });

  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  it('writes one record for a run longer than fizzle_seconds and none for a shorter one', async () => {
    const long = await cluster.createVm({ name: 'acct-long', owner: 'alice', spec: { boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: BURN_CMDLINE } } });
    const short = await cluster.createVm({ name: 'acct-short', owner: 'bob' });

    const shortRec = await cluster.waitForStatus(short, 'RUNNING');
    // Stopped once the collector has measured it (a process that lives less than one
    // process check is never measured, so it has no usage to decide on; docs/metrics.md).
    await waitUntil(async () => ((await cluster.kv.get(cluster.keys.stats('hv1')))?.raw.includes(short) ? true : undefined), 20_000, 'the short VM in the stats summary');
    await cluster.patchVm(short, { status: 'TO_STOP', force_stop: true });
    await cluster.waitForStatus(short, 'STOP');

    const longRec = await cluster.waitForStatus(long, 'RUNNING');
    const runtime = longRec.runtime as { pid: number; started_at: string };
    const startedMs = Date.parse(runtime.started_at);
    // Past fizzle_seconds by a margin, then the test's own read of the CPU the process used.
    await new Promise((r) => setTimeout(r, Math.max(0, startedMs + (FIZZLE + 2) * 1000 - Date.now())));
    const cpuBefore = await procCpuSeconds(runtime.pid);
    const stopAsked = Date.now();
    await cluster.patchVm(long, { status: 'TO_STOP', force_stop: true });
    await cluster.waitForStatus(long, 'STOP');
    const stopSeen = Date.now();

    const archived = await waitUntil(async () => {
      const r = await records(agent.stateDir, 'apel-archive');
      return r.some((x) => x.fields.get('VMUUID')?.startsWith(long)) ? r : undefined;
    }, 20_000, 'the long VM’s accounting record');

    const mine = archived.filter((x) => x.fields.get('VMUUID')?.startsWith(long));
    assert.equal(mine.length, 1, 'exactly one record for the long run');
    assert.equal(archived.filter((x) => x.fields.get('VMUUID')?.startsWith(short)).length, 0, 'no record for the short run');
    const f = mine[0]!.fields;
    const start = Number(f.get('StartTime'));
    const end = Number(f.get('EndTime'));
    assert.equal(f.get('VMUUID'), `${long}-${startedMs}`);
    assert.equal(start, Math.floor(startedMs / 1000), 'StartTime is the process start the record reported');
    assert.ok(end >= Math.floor(stopAsked / 1000) && end <= Math.ceil(stopSeen / 1000), `EndTime ${end} lies between the stop request ${stopAsked / 1000} and STOP ${stopSeen / 1000}`);
    assert.equal(Number(f.get('WallDuration')), end - start);
    assert.ok(end - start >= FIZZLE, 'the run is longer than fizzle_seconds');
    const cpu = Number(f.get('CpuDuration'));
    assert.ok(cpu >= Math.floor(cpuBefore) && cpu <= Math.ceil(cpuBefore) + end - Math.floor(stopAsked / 1000) + 2, `CpuDuration ${cpu} matches the process's CPU (${cpuBefore} s read just before the stop)`);
    assert.ok(cpu >= 1, 'a guest spinning its vCPU used CPU');
    assert.equal(f.get('CpuCount'), '1');
    assert.equal(f.get('Memory'), '96');
    assert.equal(f.get('SiteName'), SITE);
    assert.equal(f.get('MachineName'), 'acct-long');
    assert.equal(f.get('LocalUserId'), 'alice');
    assert.equal(f.get('Status'), 'completed');
    assert.equal(mine[0]!.day, new Date(end * 1000).toISOString().slice(0, 10).replaceAll('-', ''), 'filed under the UTC day it ended');

    const outgoing = await records(agent.stateDir, 'apel-outgoing');
    assert.deepEqual(outgoing.map((x) => x.fields.get('VMUUID')), [`${long}-${startedMs}`], 'with gocdb_sitename set the record is queued for ssmsend too');

    // The short run's decision is in the log, so "no record" is not just "not yet".
    const shortName = String(shortRec.name);
    await waitUntil(async () => ((await readFile(agent.logFile, 'utf8')).includes(`No accounting record for VM ${shortName}: it ran`) ? true : undefined), 10_000, 'the fizzle line in the agent log');
  });
});
