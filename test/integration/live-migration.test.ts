/**
 * Live migration between two real agents (real etcd, real qemu under TCG):
 * `drover vm migrate --to` moves a running test guest from hv1 to hv2; the
 * guest keeps running (its serial counter goes on from where it was, with no
 * new boot) and the record moves. A migration that cannot happen leaves the
 * VM running, untouched, on its host. `host drain --move` empties a host.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runDrover } from '../cli/helpers.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { pidAlive, startCluster, waitUntil, type Cluster } from '../helpers/agent-harness.js';

const run = promisify(execFile);

interface Runtime {
  pid: number;
  serial_log: string;
}
const runtimeOf = (vm: Record<string, unknown> | null): Runtime => vm?.runtime as Runtime;

/** The DROVER-TICK numbers in a serial log, in order. */
async function ticks(path: string): Promise<number[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return [...text.matchAll(/DROVER-TICK (\d+)/g)].map((m) => Number(m[1]));
}

describe('live migration (two agents, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let shared: string;

  const drover = (args: string[]) => runDrover([...args, '--etcd', etcd.endpoint, '--prefix', cluster.prefix], { timeoutMs: 120_000 });

  before(async () => {
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    shared = join(cluster.dir, 'shared');
    await mkdir(shared, { recursive: true });
    const config = { shared_storage: [shared], migration_address: '127.0.0.1', migration_prepare_timeout: 10 };
    await cluster.startAgent('hv1', { config });
    await cluster.startAgent('hv2', { config });
    // hv3 cannot listen on its migration address (not an address of this machine; nothing is sent there).
    await cluster.startAgent('hv3', { config: { ...config, migration_address: '192.0.2.1' } });
    // Every target must be ALIVE before a test migrates to it: a loaded machine starts agents slowly.
    for (const name of ['hv1', 'hv2', 'hv3']) {
      await waitUntil(async () => ((await cluster.kv.get(cluster.keys.alive(name))) ? true : undefined), 60_000, `${name} to be ALIVE`);
    }
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  it('moves a running guest to hv2 without rebooting it: the serial counter continues and the record moves', async () => {
    const disk = join(shared, 'web.raw');
    await run('qemu-img', ['create', '-f', 'raw', disk, '16M']);
    const uuid = await cluster.createVm({ name: 'web', spec: { disks: [{ path: disk, format: 'raw' }] } }, 'hv1');
    const before = runtimeOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    await waitUntil(async () => ((await ticks(before.serial_log)).length >= 2 ? true : undefined), 30_000, 'the guest to tick on hv1');

    const res = await drover(['vm', 'migrate', 'web', '--to', 'hv2', '--wait=90']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /was migrated live to hv2/);
    assert.match(res.stderr, /now runs on hv2/);

    const moved = await cluster.getVm(uuid);
    assert.equal(moved?.host, 'hv2');
    assert.equal(moved?.status, 'RUNNING');
    const migration = moved?.migration as Record<string, unknown>;
    assert.equal(migration.state, 'completed');
    assert.equal(migration.source, 'hv1');
    const after = runtimeOf(moved);
    assert.notEqual(after.pid, before.pid);
    assert.ok(pidAlive(after.pid), 'the qemu on hv2 runs');
    await waitUntil(async () => (pidAlive(before.pid) ? undefined : true), 10_000, 'the paused source qemu to go');
    assert.notEqual(after.serial_log, before.serial_log, 'the serial log is hv2\'s own');

    // The guest keeps counting on hv2 from where it was on hv1, and never booted again.
    const onSource = await ticks(before.serial_log);
    const last = onSource[onSource.length - 1] ?? 0;
    await waitUntil(async () => ((await ticks(after.serial_log)).length >= 2 ? true : undefined), 20_000, 'the guest to tick on hv2');
    const onTarget = await ticks(after.serial_log);
    assert.ok(onTarget[0]! > last - 1 && onTarget[0]! <= last + 3, `hv2 continues the count (hv1 ended at ${last}, hv2 began at ${onTarget[0]})`);
    const targetLog = await readFile(after.serial_log, 'utf8');
    assert.doesNotMatch(targetLog, /DROVER-GUEST-READY/, 'no new boot on hv2');
    await cluster.waitForEvent((e) => e.event === 'vm.migrated' && e.vm === uuid, 5000, 'vm.migrated');
  });

  it('a migration the target cannot receive fails cleanly: the VM keeps running on hv1 with the same pid', async () => {
    const uuid = await cluster.createVm({ name: 'stay' }, 'hv1');
    const before = runtimeOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    const res = await drover(['vm', 'migrate', 'stay', '--to', 'hv3', '--wait=60']);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /migration of VM stay .* to hv3 failed: .*could not listen for the migration on 192\.0\.2\.1/);
    const vm = await cluster.getVm(uuid);
    assert.equal(vm?.host, 'hv1');
    assert.equal(vm?.status, 'RUNNING');
    assert.equal(runtimeOf(vm).pid, before.pid);
    assert.ok(pidAlive(before.pid));
    assert.equal((vm?.migration as Record<string, unknown>).state, 'failed');
    await cluster.waitForEvent((e) => e.event === 'vm.migration_failed' && e.vm === uuid, 5000, 'vm.migration_failed');
  });

  it('refuses to migrate a VM whose disk is not on shared storage, leaving it running', async () => {
    const local = join(cluster.dir, 'local.raw');
    await run('qemu-img', ['create', '-f', 'raw', local, '8M']);
    const uuid = await cluster.createVm({ name: 'local', spec: { disks: [{ path: local, format: 'raw' }] } }, 'hv1');
    const before = runtimeOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    const res = await drover(['vm', 'migrate', 'local', '--to', 'hv2', '--wait=30']);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /not under any shared_storage path/);
    const vm = await cluster.getVm(uuid);
    assert.equal(vm?.host, 'hv1');
    assert.equal(vm?.status, 'RUNNING');
    assert.equal(runtimeOf(vm).pid, before.pid);
    // Out of the way of the drain test below.
    await drover(['vm', 'delete', 'local', '--wait=60']);
    await drover(['vm', 'delete', 'stay', '--wait=60']);
  });

  it('host drain --move: the running VM moves live, the stopped one cold, and hv1 is left empty', async () => {
    const running = await cluster.createVm({ name: 'busy', spec: { nodes: ['hv1', 'hv2'] } }, 'hv1');
    const stopped = await cluster.createVm({ name: 'idle', spec: { nodes: ['hv1', 'hv2'] } }, 'hv1');
    const pid = runtimeOf(await cluster.waitForStatus(running, 'RUNNING')).pid;
    await cluster.waitForStatus(stopped, 'RUNNING');
    assert.equal((await drover(['vm', 'stop', 'idle', '--wait=60'])).code, 0);

    const res = await drover(['host', 'drain', 'hv1', '--move', '--timeout', '90', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const summary = JSON.parse(res.stdout) as { drained: boolean; live: number; cold: number; left: number };
    assert.deepEqual({ drained: summary.drained, live: summary.live, cold: summary.cold, left: summary.left }, { drained: true, live: 1, cold: 1, left: 0 });

    const busy = await cluster.getVm(running);
    assert.equal(busy?.host, 'hv2');
    assert.equal(busy?.status, 'RUNNING');
    assert.ok(pidAlive(runtimeOf(busy).pid));
    await waitUntil(async () => (pidAlive(pid) ? undefined : true), 10_000, 'hv1\'s copy to go');
    const idle = await cluster.getVm(stopped);
    assert.equal(idle?.host, 'hv2');
    assert.equal(idle?.status, 'STOP');
    const host = JSON.parse((await drover(['host', 'get', 'hv1'])).stdout) as { drained: boolean };
    assert.equal(host.drained, true);
    // The cold-moved VM starts on its new host.
    assert.equal((await drover(['vm', 'start', 'idle', '--wait=60'])).code, 0);
    assert.equal((await cluster.getVm(stopped))?.host, 'hv2');
  });
});
