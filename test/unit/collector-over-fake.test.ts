/**
 * The Collector over the fake hypervisor (it passes the same contract as
 * qemu): the summary validates against the schema and is bounded, CPU load
 * follows the guest's load, gone VMs leave the summary and /metrics, the
 * heartbeat file is touched, and a finished VM's usage is final when its
 * exit is heard.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostStatsSchema, MAX_VMS_PER_SUMMARY, type HostStats } from '../../src/contract/host-stats.js';
import { FakeHypervisor } from '../../src/hypervisor/fake/fake-hypervisor.js';
import { silentLogger } from '../../src/lib/logger.js';
import { Collector, type VmUsage } from '../../src/observability/collector.js';
import { heartbeatAgeSeconds, heartbeatPath } from '../../src/observability/heartbeat-file.js';
import type { VmInfo } from '../../src/observability/vm-stats.js';

const spec = { vcpus: 1, memory: 96, boot: { kernel: '/srv/k' }, vnc: 'none' as const, restart: 'always' as const };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Collector over the fake hypervisor', () => {
  let dir: string;
  let hv: FakeHypervisor;
  let collector: Collector;
  const vms = new Map<string, VmInfo>();
  const summaries: HostStats[] = [];
  const reports: string[] = [];
  let freeAlarm = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-collector-'));
    hv = new FakeHypervisor();
    collector = new Collector({
      host: 'hv1',
      stateDir: dir,
      cpus: 2,
      hypervisor: hv,
      settings: () => ({ vm_stats_interval: 0.2, process_check_interval: 0.05, storage_interval: 0.1, memory_interval: 0.1, storage_free_alarm: freeAlarm }),
      vms: () => vms.values(),
      writeSummary: async (s) => void summaries.push(s),
      report: async (r) => void reports.push(r.event),
      logger: silentLogger(),
    });
  });
  after(async () => {
    collector.stop();
    await hv.detachAll();
    await rm(dir, { recursive: true, force: true });
  });

  async function startVm(name: string): Promise<string> {
    const uuid = randomUUID();
    vms.set(uuid, { uuid, name, vcpus: 1, memory: 96 });
    await hv.start({ uuid, name, spec });
    return uuid;
  }

  async function nextSummary(test: (s: HostStats) => boolean, what: string): Promise<HostStats> {
    const deadline = Date.now() + 5000;
    for (let seen = summaries.length; ; ) {
      for (; seen < summaries.length; seen++) if (test(summaries[seen]!)) return summaries[seen]!;
      assert.ok(Date.now() < deadline, `no summary where ${what}`);
      await sleep(20);
    }
  }

  it('writes a valid summary with each VM\'s load, and a fresh heartbeat file', async () => {
    const busy = await startVm('busy');
    const idle = await startVm('idle');
    hv.world.setCpuLoad(busy, 1);
    await collector.start();
    // Two intervals after the load changed, the rate is the guest's.
    await sleep(250);
    const s = await nextSummary((x) => x.vms.length === 2, 'both VMs are listed');
    const parsed = hostStatsSchema.safeParse(s);
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
    assert.equal(s.host, 'hv1');
    assert.equal(s.interval, 0.2);
    assert.equal(s.storage.path, dir);
    assert.ok(s.storage.ok && s.storage.total_bytes > 0 && s.memory.total_bytes > 0);
    const byName = new Map(s.vms.map((v) => [v.name, v]));
    assert.ok(Math.abs(byName.get('busy')!.cpu_load - 1) < 0.1, `busy load ${byName.get('busy')!.cpu_load}`);
    assert.ok(byName.get('idle')!.cpu_load < 0.1, `idle load ${byName.get('idle')!.cpu_load}`);
    assert.equal(byName.get('idle')!.uuid, idle);
    assert.equal(s.truncated, undefined);
    const age = await heartbeatAgeSeconds(heartbeatPath(dir));
    assert.ok(age !== null && age < 1, `heartbeat age ${age}`);
  });

  it('hands accounting the final usage of a VM as its exit is heard, and drops its series', async () => {
    const uuid = await startVm('short');
    hv.world.setCpuLoad(uuid, 0.5);
    await sleep(150);
    const finished: VmUsage[] = [];
    let atExit: VmUsage | undefined;
    collector.onFinished((u) => finished.push(u));
    // A listener registered after the collector (as the agent's is) sees the final usage.
    hv.onExit((e) => (atExit = collector.lastUsage(e.uuid)));
    const running = collector.lastUsage(uuid);
    assert.ok(running && running.endedAt === null && running.cpuSeconds > 0);
    hv.crash(uuid);
    await sleep(20);
    assert.equal(finished.length, 1);
    const u = finished[0]!;
    assert.deepEqual(atExit, u);
    assert.equal(u.uuid, uuid);
    assert.equal(u.name, 'short');
    assert.ok(u.endedAt !== null && Date.parse(u.endedAt) >= Date.parse(u.startedAt));
    assert.ok(Date.parse(u.endedAt) - Date.parse(u.cpuSecondsAt) <= 200, 'CPU seconds at most about one process check old');
    assert.ok(u.cpuSeconds >= 0.05, `cpu ${u.cpuSeconds}`);
    vms.delete(uuid);
    await nextSummary((x) => !x.vms.some((v) => v.uuid === uuid), 'the ended VM is gone');
    const text = await collector.metrics.registry.metrics();
    assert.ok(!text.includes(uuid), 'no series of the ended VM');
    assert.deepEqual(collector.lastUsage(uuid), u, 'still there after the exit');
  });

  it('reports the storage alarm once per transition', async () => {
    freeAlarm = 100;
    const deadline = Date.now() + 3000;
    while (!reports.includes('host.storage_low')) {
      assert.ok(Date.now() < deadline, 'no host.storage_low');
      await sleep(20);
    }
    await sleep(300);
    assert.equal(reports.filter((r) => r === 'host.storage_low').length, 1);
    freeAlarm = 0;
    while (!reports.includes('host.storage_ok')) {
      assert.ok(Date.now() < deadline + 3000, 'no host.storage_ok');
      await sleep(20);
    }
  });
});

describe('Collector summary bound', () => {
  it('keeps at most MAX_VMS_PER_SUMMARY VMs, sets truncated, and stays far below etcd\'s 1.5 MiB request limit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-collector-'));
    const hv = new FakeHypervisor();
    const vms: VmInfo[] = [];
    for (let i = 0; i <= MAX_VMS_PER_SUMMARY; i++) {
      const uuid = randomUUID();
      const name = `vm-${String(i).padStart(4, '0')}-with-a-longish-name`;
      vms.push({ uuid, name, vcpus: 1, memory: 96 });
      await hv.start({ uuid, name, spec });
    }
    let written: HostStats | undefined;
    const collector = new Collector({
      host: 'hv1',
      stateDir: dir,
      cpus: 2,
      hypervisor: hv,
      settings: () => ({ vm_stats_interval: 60, process_check_interval: 60, storage_interval: 60, memory_interval: 60, storage_free_alarm: 0 }),
      vms: () => vms,
      writeSummary: async (x) => void (written = x),
      report: async () => undefined,
      logger: silentLogger(),
    });
    try {
      await collector.start();
      assert.ok(written);
      assert.ok(hostStatsSchema.safeParse(written).success);
      assert.equal(written.vms.length, MAX_VMS_PER_SUMMARY);
      assert.equal(written.truncated, true);
      const bytes = Buffer.byteLength(JSON.stringify(written));
      assert.ok(bytes < 1024 * 1024, `summary of ${bytes} bytes`);
    } finally {
      collector.stop();
      await hv.detachAll();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
