/**
 * A host that dies (its agent and its qemu killed with -9, as in a power
 * loss): its lease expires, the scheduler (running inside the surviving
 * agents) marks it DEAD, and its VMs end in KILLED with a reason, or run
 * again on another host when spec.failover is set.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { killQemusUnder, pidAlive, startCluster, waitUntil, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';

const pidOf = (vm: Record<string, unknown> | null): number => (vm?.runtime as { pid: number }).pid;
const fleetConfig = { scheduler: true, election_ttl: 2, failover_margin: 1, lease_ttl: 6 };

describe('host failure (real etcd, real qemu, two agents with schedulers)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let hv1: AgentProcess;

  before(async () => {
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    hv1 = await cluster.startAgent('hv1', { config: fleetConfig });
    await cluster.startAgent('hv2', { config: fleetConfig });
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  it('a VM without a host is placed by the scheduler and runs there', async () => {
    const uuid = await cluster.createVm({ name: 'placed', spec: { nodes: ['hv2'] } }, '');
    const vm = await cluster.waitForStatus(uuid, 'RUNNING', 60_000);
    assert.equal(vm.host, 'hv2');
    assert.ok((vm.log as string[]).some((l) => / - scheduled on hv2$/.test(l)));
  });

  it('power loss of hv1: its plain VM is KILLED with a reason, its failover VM runs on hv2 within 30 s', async () => {
    const plain = await cluster.createVm({ name: 'plain' }, 'hv1');
    const ha = await cluster.createVm({ name: 'ha', spec: { failover: true } }, 'hv1');
    const plainPid = pidOf(await cluster.waitForStatus(plain, 'RUNNING'));
    const haPid = pidOf(await cluster.waitForStatus(ha, 'RUNNING'));
    // Power loss: the agent and its VMs die at once.
    await hv1.kill('SIGKILL');
    await killQemusUnder(hv1.stateDir);
    const t0 = Date.now();
    await waitUntil(async () => (pidAlive(plainPid) || pidAlive(haPid) ? undefined : true), 5000, 'hv1\'s qemus gone');

    const moved = await cluster.waitForVm(ha, (v) => v?.status === 'RUNNING' && v.host === 'hv2', 30_000, 'the failover VM running on hv2');
    const took = Date.now() - t0;
    assert.ok(took < 30_000, `failover took ${took} ms`);
    assert.ok((moved?.log as string[]).some((l) => /failed over from hv1/.test(l)));

    const killed = await cluster.waitForStatus(plain, 'KILLED', 15_000);
    assert.match(String(killed.error), /Host hv1 died/);
    assert.equal(killed.host, 'hv1', 'a plain VM stays designated to its host');
    const host = await waitUntil(async () => {
      const e = await cluster.kv.get(cluster.keys.host('hv1'));
      const rec = e ? (JSON.parse(e.raw) as { status: string }) : null;
      return rec?.status === 'DEAD' ? rec : undefined;
    }, 10_000, 'hv1 DEAD');
    assert.equal(host.status, 'DEAD');
    await cluster.waitForEvent((e) => e.event === 'host.down' && e.host === 'hv1', 5000, 'host.down');
  });

  it('hv3 cut off from etcd while it and its qemu live on: it fences its failover VM, which then runs on hv2, never on both at once', async () => {
    const { startTcpProxy } = await import('../helpers/tcp-proxy.js');
    const url = new URL(etcd.endpoint);
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port) });
    try {
      const hv3 = await cluster.startAgent('hv3', { config: { ...fleetConfig, scheduler: false }, etcd: proxy.url });
      const uuid = await cluster.createVm({ name: 'cutoff', spec: { failover: true, nodes: ['hv2', 'hv3'] } }, 'hv3');
      const oldPid = pidOf(await cluster.waitForStatus(uuid, 'RUNNING'));
      proxy.suspend();
      const t0 = Date.now();
      // Self-fencing: hv3 kills its failover VM once its lease is unconfirmed for 2/3 of the TTL.
      await waitUntil(async () => (pidAlive(oldPid) ? undefined : true), 15_000, 'hv3 to fence its VM');
      const fencedAt = Date.now();
      const moved = await cluster.waitForVm(uuid, (v) => v?.status === 'RUNNING' && v.host === 'hv2', 30_000, 'the VM running on hv2');
      const startedAt = Date.parse(String((moved?.runtime as { started_at: string }).started_at));
      assert.ok(startedAt > fencedAt - 200, `hv2 started it (${new Date(startedAt).toISOString()}) only after hv3 had fenced it (${new Date(fencedAt).toISOString()})`);
      assert.ok(Date.now() - t0 < 30_000, `failover took ${Date.now() - t0} ms`);
      assert.equal(hv3.child.exitCode, null, 'hv3 kept running');
      // The network comes back: hv3 does not start its old copy again.
      proxy.resume();
      await new Promise((r) => setTimeout(r, 6000));
      const after = await cluster.getVm(uuid);
      assert.equal(after?.host, 'hv2');
      const copies = (await import('node:fs/promises')).readdir('/proc');
      let running = 0;
      for (const p of await copies) {
        if (!/^\d+$/.test(p)) continue;
        const cmd = await (await import('node:fs/promises')).readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes('qemu-system') && cmd.includes(uuid)) running++;
      }
      assert.equal(running, 1, 'exactly one qemu runs the VM');
    } finally {
      await proxy.close();
    }
  });

  it('hv4 frozen with SIGSTOP while its qemu runs on: the watchdog fences the failover VM, which then runs on hv2, never on both', async () => {
    const hv4 = await cluster.startAgent('hv4', { config: { ...fleetConfig, scheduler: false } });
    const uuid = await cluster.createVm({ name: 'frozen', spec: { failover: true, nodes: ['hv2', 'hv4'] } }, 'hv4');
    const oldPid = pidOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    await new Promise((r) => setTimeout(r, 500)); // the watchdog has seen it in the fence file
    hv4.child.kill('SIGSTOP');
    try {
      const t0 = Date.now();
      await waitUntil(async () => (pidAlive(oldPid) ? undefined : true), 15_000, 'the watchdog to fence the VM');
      const fencedAt = Date.now();
      const moved = await cluster.waitForVm(uuid, (v) => v?.status === 'RUNNING' && v.host === 'hv2', 30_000, 'the VM running on hv2');
      const startedAt = Date.parse(String((moved?.runtime as { started_at: string }).started_at));
      assert.ok(startedAt > fencedAt - 200, 'hv2 started it only after the watchdog had killed the old copy');
      assert.ok(Date.now() - t0 < 30_000, `failover took ${Date.now() - t0} ms`);
    } finally {
      hv4.child.kill('SIGCONT');
    }
    // The agent wakes up: it must not start a second copy.
    await new Promise((r) => setTimeout(r, 6000));
    const after = await cluster.getVm(uuid);
    assert.equal(after?.host, 'hv2');
    assert.equal(after?.status, 'RUNNING');
    const { readdir, readFile } = await import('node:fs/promises');
    let running = 0;
    for (const p of await readdir('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
      if (cmd.includes('qemu-system') && cmd.includes(uuid) && pidAlive(Number(p))) running++;
    }
    assert.equal(running, 1, 'exactly one qemu runs the VM');
  });
});
