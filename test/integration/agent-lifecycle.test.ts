/**
 * The agent with real etcd and real qemu (TCG): the request flows of
 * CONTRACT.md section 3 end to end, as a user drives them through etcd.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { GUEST, pidAlive, startCluster, waitForSerialText, waitUntil, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { readFile } from 'node:fs/promises';

type Runtime = { pid: number; serial_log: string; vnc?: string };
const runtimeOf = (vm: Record<string, unknown> | null): Runtime => (vm?.runtime ?? {}) as Runtime;

describe('agent lifecycle (real etcd, real qemu)', () => {
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

  it('registers the host with the contract fields and a liveness key', async () => {
    const host = await waitUntil(async () => (await cluster.kv.get(cluster.keys.host('hv1'))) ?? undefined, 20_000, 'host record');
    const rec = JSON.parse(host.raw) as Record<string, unknown>;
    for (const field of ['name', 'hostid', 'ip', 'status', 'cpus', 'memory', 'reserved_memory', 'free_memory', 'version', 'heartbeat_at']) {
      assert.ok(field in rec, `host record lacks ${field}`);
    }
    assert.equal(rec.status, 'ALIVE');
    assert.equal(rec.reserved_memory, 256);
    assert.equal(rec.memory as number - 256, rec.free_memory);
    assert.match(rec.hostid as string, /^[0-9a-f-]{36}$/);
    const hostid = (await readFile(join(agent.stateDir, 'hostid'), 'utf8')).trim();
    assert.equal(rec.hostid, hostid);
    const alive = await cluster.kv.get(cluster.keys.alive('hv1'));
    assert.ok(alive && alive.lease !== '0', 'the alive key is held under a lease');
  });

  it('re-reads its config on SIGHUP, merging FILE.d/*.toml in order (later wins)', async () => {
    const { mkdir, writeFile } = await import('node:fs/promises');
    const dropIns = join(cluster.dir, 'hv1.toml.d');
    await mkdir(dropIns, { recursive: true });
    await writeFile(join(dropIns, '10-memory.toml'), 'reserved_memory = 1024\n');
    await writeFile(join(dropIns, '20-memory.toml'), 'reserved_memory = 2048\n');
    agent.child.kill('SIGHUP');
    const host = await waitUntil(async () => {
      const e = await cluster.kv.get(cluster.keys.host('hv1'));
      const rec = e ? (JSON.parse(e.raw) as { reserved_memory: number }) : null;
      return rec?.reserved_memory === 2048 ? rec : undefined;
    }, 20_000, 'reserved_memory 2048 in the host record');
    assert.equal(host.reserved_memory, 2048);
    const { rm } = await import('node:fs/promises');
    await rm(dropIns, { recursive: true });
  });

  it('refuses a second live agent with the same name', async () => {
    const second = await cluster.startAgent('hv1', { stateDir: join(cluster.dir, 'other-state') });
    const code = await second.exited;
    assert.equal(code, 1);
    const log = await readFile(second.logFile, 'utf8');
    assert.match(log, /Host name hv1 is held by a live agent/);
  });

  it('starts a new VM: STARTING then RUNNING, with its serial console showing the guest', async () => {
    const uuid = await cluster.createVm({ name: 'web-1', unknown_field: { kept: true } });
    const vm = await cluster.waitForStatus(uuid, 'RUNNING', 60_000);
    const rt = runtimeOf(vm);
    assert.ok(pidAlive(rt.pid), 'qemu runs');
    await waitForSerialText(rt.serial_log, 'DROVER-GUEST-READY', 60_000);
    assert.deepEqual(vm.unknown_field, { kept: true }, 'unknown fields survive the agent’s writes');
    const log = vm.log as string[];
    assert.ok(log.some((l) => / - starting on hv1/.test(l)) && log.some((l) => / - started on hv1/.test(l)), log.join('\n'));
    // qemu's argv carries the contract's identity.
    const argv = (await readFile(`/proc/${rt.pid}/cmdline`, 'utf8')).split('\0');
    assert.ok(argv.includes(uuid) && argv.some((a) => a.startsWith('guest=web-1')), argv.join(' '));
    // VNC on a unix socket by default, in the state dir, readable by the agent's user only.
    assert.ok(rt.vnc?.startsWith(agent.stateDir), `vnc at ${rt.vnc}`);
    await access(rt.vnc!);
    const { stat } = await import('node:fs/promises');
    assert.equal((await stat(agent.stateDir)).mode & 0o777, 0o711, 'state dir is private: searchable (for qemu\'s user, docs/security.md), not listable');
    assert.equal((await stat(join(agent.stateDir, 'vms', uuid))).mode & 0o777, 0o700, 'the run dir is qemu\'s own');
  });

  it('stops on TO_STOP with an ACPI power-down, ends in STOP, and a second stop is a no-op', async () => {
    const uuid = await cluster.createVm({ name: 'stop-me' });
    const running = await cluster.waitForStatus(uuid, 'RUNNING');
    const pid = runtimeOf(running).pid;
    await waitForSerialText(runtimeOf(running).serial_log, 'DROVER-GUEST-READY');
    const t0 = Date.now();
    await cluster.patchVm(uuid, { status: 'TO_STOP' });
    const stopped = await cluster.waitForStatus(uuid, 'STOP', 30_000);
    assert.ok(Date.now() - t0 < 9000, 'the guest honoured the power button before the 10 s timeout');
    assert.equal(pidAlive(pid), false);
    assert.equal(stopped.runtime, undefined);
    assert.ok((stopped.log as string[]).some((l) => /stopped on hv1/.test(l)));
    // TO_STOP on a stopped VM: back to STOP, never stuck.
    await cluster.patchVm(uuid, { status: 'TO_STOP' });
    await cluster.waitForStatus(uuid, 'STOP', 15_000);
  });

  it('forces the stop when the guest ignores the power button', async () => {
    const uuid = await cluster.createVm({
      name: 'stubborn',
      spec: { boot: { kernel: GUEST.kernel, initrd: GUEST.initrdIgnoreAcpi, cmdline: 'console=ttyS0 quiet' }, stop_timeout: 2 },
    });
    const running = await cluster.waitForStatus(uuid, 'RUNNING');
    await waitForSerialText(runtimeOf(running).serial_log, 'DROVER-GUEST-READY');
    await cluster.patchVm(uuid, { status: 'TO_STOP' });
    await cluster.waitForStatus(uuid, 'STOP', 20_000);
    assert.equal(pidAlive(runtimeOf(running).pid), false);
  });

  it('starts a stopped VM on REQUESTED_START and restarts a running one on REQUESTED_RESTART', async () => {
    const uuid = await cluster.createVm({ name: 'cycle' });
    await cluster.waitForStatus(uuid, 'RUNNING');
    await cluster.patchVm(uuid, { status: 'TO_STOP', force_stop: true });
    await cluster.waitForStatus(uuid, 'STOP', 20_000);
    await cluster.patchVm(uuid, { status: 'REQUESTED_START' });
    const again = await cluster.waitForStatus(uuid, 'RUNNING');
    const pid1 = runtimeOf(again).pid;
    await cluster.patchVm(uuid, { status: 'REQUESTED_RESTART', spec: { ...(again.spec as object), stop_timeout: 1 } });
    const restarted = await cluster.waitForVm(uuid, (vm) => vm?.status === 'RUNNING' && runtimeOf(vm).pid !== pid1, 60_000, 'a new pid');
    assert.ok(pidAlive(runtimeOf(restarted).pid));
    assert.equal(pidAlive(pid1), false);
  });

  it('deletes on REQUESTED_DELETE: process, runtime files and the key go', async () => {
    const uuid = await cluster.createVm({ name: 'doomed' });
    const running = await cluster.waitForStatus(uuid, 'RUNNING');
    await cluster.patchVm(uuid, { status: 'REQUESTED_DELETE', force_stop: true });
    await cluster.waitForVm(uuid, (vm) => vm === null, 30_000, 'the key to be deleted');
    assert.equal(pidAlive(runtimeOf(running).pid), false);
    await assert.rejects(access(join(agent.stateDir, 'vms', uuid)), 'the run dir is removed');
    const deleted = await cluster.waitForEvent((e) => e.vm === uuid && e.event === 'vm.deleted', 10_000);
    assert.equal(deleted.host, 'hv1');
  });
});
