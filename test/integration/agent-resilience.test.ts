/**
 * Restart safety and the periodic check (seed 004 v2): an agent killed with
 * -9 and started again adopts its VMs without restarting them; a qemu that
 * no record designates here is reported; etcd going away for 20 s leaves
 * VMs untouched and the agent catches up when it returns.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { GUEST, pidAlive, startCluster, waitUntil, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';

const pidOf = (vm: Record<string, unknown> | null): number => (vm?.runtime as { pid: number }).pid;

describe('agent resilience (real etcd, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let agent: AgentProcess;

  before(async () => {
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    agent = await cluster.startAgent('hv1');
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  it('an agent killed with -9 and restarted adopts the running VM: same pid, no restart', async () => {
    const uuid = await cluster.createVm({ name: 'survivor' });
    const before = await cluster.waitForStatus(uuid, 'RUNNING');
    const pid = pidOf(before);
    const upsBefore = (await cluster.events.list()).filter((e) => e.event === 'host.up').length;
    await agent.kill('SIGKILL');
    assert.ok(pidAlive(pid), 'qemu outlives the agent');
    agent = await cluster.startAgent('hv1', { stateDir: agent.stateDir });
    // The new agent is up once it claims the name and heartbeats again.
    await waitUntil(async () => ((await cluster.events.list()).filter((e) => e.event === 'host.up').length > upsBefore ? true : undefined), 30_000, 'the new agent to be up');
    // Give it a resync to act if it were going to.
    await new Promise((r) => setTimeout(r, 4000));
    const after = await cluster.getVm(uuid);
    assert.equal(after?.status, 'RUNNING');
    assert.equal(pidOf(after), pid, 'same qemu process');
    assert.ok(pidAlive(pid));
    const restarts = (await cluster.events.list({ vm: uuid })).filter((e) => e.event === 'vm.restarted' || e.event === 'vm.crashed' || e.event === 'vm.missing');
    assert.deepEqual(restarts, []);
  });

  it('reports a foreign qemu that no record designates to this host', async () => {
    const uuid = randomUUID();
    // Started by hand, outside drover; its serial log sits in the agent's state
    // dir so the agent's foreign_scope = state-dir sees it.
    const foreign = spawn('qemu-system-x86_64', [
      '-accel', 'tcg', '-m', '64', '-nodefaults', '-display', 'none', '-uuid', uuid, '-name', 'guest=handmade',
      '-kernel', GUEST.kernel, '-initrd', GUEST.initrd, '-append', 'console=ttyS0 quiet',
      '-serial', `file:${join(agent.stateDir, 'handmade-serial.log')}`,
    ], { stdio: 'ignore' });
    try {
      const ev = await cluster.waitForEvent((e) => e.event === 'vm.foreign' && e.vm === uuid, 30_000, 'vm.foreign');
      assert.equal(ev.level, 'warn');
      assert.match(ev.message, /handmade/);
      assert.ok(pidAlive(foreign.pid!), 'foreign_vms = report leaves it running');
    } finally {
      foreign.kill('SIGKILL');
    }
  });

  it('reports its own VM as foreign once the record is deleted by hand', async () => {
    const uuid = await cluster.createVm({ name: 'orphan' });
    const pid = pidOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    await cluster.kv.delete(cluster.keys.vm(uuid));
    const ev = await cluster.waitForEvent((e) => e.event === 'vm.foreign' && e.vm === uuid, 30_000, 'vm.foreign for the orphan');
    assert.match(ev.message, /no record designates it to this host any more/);
    assert.ok(pidAlive(pid), 'reported, not stopped');
    process.kill(pid, 'SIGKILL');
  });

  it('etcd away for 20 s: VMs untouched, the agent reconnects and resyncs', async () => {
    const uuid = await cluster.createVm({ name: 'steady' });
    const pid = pidOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    await etcd.server.stop();
    await new Promise((r) => setTimeout(r, 20_000));
    assert.ok(pidAlive(pid), 'the VM kept running while etcd was away');
    assert.equal(agent.child.exitCode, null, 'the agent kept running');
    await etcd.server.start();
    // A record written after etcd returns is acted on: the agent is back.
    const late = await cluster.createVm({ name: 'after-outage' });
    await cluster.waitForStatus(late, 'RUNNING', 60_000);
    const steady = await cluster.getVm(uuid);
    assert.equal(steady?.status, 'RUNNING');
    assert.equal(pidOf(steady), pid);
    // The host is ALIVE again under a lease.
    const alive = await cluster.kv.get(cluster.keys.alive('hv1'));
    assert.ok(alive, 'liveness key is back');
  });
});
