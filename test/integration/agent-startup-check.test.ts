/**
 * The agent checks its host at start-up, not only every resync_interval
 * (docs/agent.md, "Start-up check"): with resync_interval = 600 s, far
 * longer than these tests, a qemu started by hand before the agent is
 * reported (event and e-mail to a real SMTP server) within seconds of the
 * agent's start, or stopped with foreign_vms = "stop"; and a VM that died
 * while no agent ran is found missing and started again. Real etcd, real
 * `drover agent` processes, real qemu (TCG) with the test guest.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoredEvent } from '../../src/store/event-log.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startTestSmtp, type TestSmtp } from '../helpers/smtp.js';
import { GUEST, pidAlive, startCluster, waitUntil, type Cluster } from '../helpers/agent-harness.js';

const pidOf = (vm: Record<string, unknown> | null): number => (vm?.runtime as { pid: number }).pid;
/** The periodic check would come only after the tests are over. */
const LONG_RESYNC = { resync_interval: 600 };
/** How soon after the agent's spawn the start-up check must have spoken (node's start and the etcd round trips included, on a loaded machine). */
const SOON_MS = 30_000;

/**
 * A qemu started by hand, outside drover, running the test guest; its serial
 * log sits in `stateDir` so an agent with foreign_scope = state-dir sees it.
 */
async function startHandmadeQemu(stateDir: string, uuid: string, name: string): Promise<{ qemu: ChildProcess; stderr: () => string }> {
  const qemu = spawn('qemu-system-x86_64', [
    '-accel', 'tcg', '-m', '64', '-nodefaults', '-display', 'none', '-uuid', uuid, '-name', `guest=${name}`,
    '-kernel', GUEST.kernel, '-initrd', GUEST.initrd, '-append', 'console=ttyS0 quiet',
    '-serial', `file:${join(stateDir, `${name}-serial.log`)}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr?.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  const pid = qemu.pid as number;
  // The process shows in /proc as qemu once it has exec'd.
  await waitUntil(async () => ((await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('qemu-system') ? true : undefined), 10_000, 'the hand-made qemu');
  return { qemu, stderr: () => stderr };
}

describe('agent start-up check (real etcd, real qemu, real SMTP)', () => {
  let etcd: TestEtcd;
  let smtp: TestSmtp;
  let cluster: Cluster;

  before(async () => {
    etcd = await startTestEtcd();
    smtp = await startTestSmtp();
    cluster = await startCluster(etcd);
  });
  after(async () => {
    // Also kills the hand-made qemus: their argv names the agents' state dirs.
    await cluster?.close();
    await smtp?.close();
    await etcd?.close();
  });

  /** The events `agent` (by host name) wrote, oldest first. */
  const eventsOf = async (host: string): Promise<StoredEvent[]> => (await cluster.events.list()).filter((e) => e.host === host);

  it('reports a qemu started by hand before the agent within seconds of its start, and leaves it running', async () => {
    const stateDir = join(cluster.dir, 'state-hv1');
    await mkdir(stateDir, { recursive: true });
    const uuid = randomUUID();
    const { qemu } = await startHandmadeQemu(stateDir, uuid, 'handmade');
    try {
      const t0 = Date.now();
      await cluster.startAgent('hv1', { stateDir, config: LONG_RESYNC, env: { DROVER_NOTIFY_EMAIL: 'sre@example.test', DROVER_SMTP_URL: smtp.url } });
      const ev = await cluster.waitForEvent((e) => e.event === 'vm.foreign' && e.vm === uuid, SOON_MS, 'vm.foreign at start-up');
      assert.ok(Date.now() - t0 < SOON_MS, `reported ${Date.now() - t0} ms after the agent's start`);
      assert.equal(ev.host, 'hv1');
      assert.equal(ev.level, 'warn');
      assert.equal(ev.message, `qemu handmade (pid ${qemu.pid}) with uuid ${uuid} runs on this host but no record designates it here. Leaving it running (foreign_vms = report).`);
      // The start-up check speaks before the agent says it is up: no periodic check did this.
      const up = await cluster.waitForEvent((e) => e.event === 'host.up' && e.host === 'hv1', SOON_MS, 'host.up');
      assert.ok(ev.ts <= up.ts, `vm.foreign at ${ev.ts}, host.up at ${up.ts}`);
      const mail = await smtp.waitFor(new RegExp(`vm\\.foreign ${uuid}`), SOON_MS);
      assert.deepEqual(mail.to, ['sre@example.test']);
      assert.ok(pidAlive(qemu.pid as number), 'foreign_vms = report leaves it running');
      assert.equal((await eventsOf('hv1')).filter((e) => e.event === 'vm.foreign').length, 1, 'reported once');
    } finally {
      qemu.kill('SIGKILL');
    }
  });

  it('with foreign_vms = "stop", stops a qemu started by hand before the agent within seconds of its start', async () => {
    const stateDir = join(cluster.dir, 'state-hv2');
    await mkdir(stateDir, { recursive: true });
    const uuid = randomUUID();
    const { qemu, stderr } = await startHandmadeQemu(stateDir, uuid, 'intruder');
    const exited = new Promise<number | null>((resolve) => qemu.once('exit', (code) => resolve(code)));
    try {
      const t0 = Date.now();
      const agent = await cluster.startAgent('hv2', { stateDir, config: { ...LONG_RESYNC, foreign_vms: 'stop' } });
      const ev = await cluster.waitForEvent((e) => e.event === 'vm.foreign' && e.vm === uuid, SOON_MS, 'vm.foreign at start-up');
      assert.equal(ev.host, 'hv2');
      assert.match(ev.message, /^qemu intruder \(pid \d+\) with uuid .* runs on this host but no record designates it here\. Stopping it \(foreign_vms = stop\)\.$/);
      const code = await Promise.race([exited, new Promise<'still running'>((r) => setTimeout(() => r('still running'), SOON_MS))]);
      // qemu ends cleanly on SIGTERM and says who sent it (bin/drover execs node: the agent's pid is the child's).
      assert.equal(code, 0, 'qemu ended');
      assert.match(stderr(), new RegExp(`terminating on signal 15 from pid ${agent.child.pid}\\b`));
      assert.ok(Date.now() - t0 < 2 * SOON_MS, `stopped ${Date.now() - t0} ms after the agent's start`);
    } finally {
      qemu.kill('SIGKILL');
    }
  });

  it('a VM that died while no agent ran is found missing at start-up and started again', async () => {
    const agent = await cluster.startAgent('hv3', { config: LONG_RESYNC });
    const uuid = await cluster.createVm({ name: 'lost-while-away' }, 'hv3');
    const pid = pidOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    await agent.kill('SIGKILL');
    process.kill(pid, 'SIGKILL');
    await waitUntil(async () => (pidAlive(pid) ? undefined : true), 10_000, 'the qemu to die');

    const t0 = Date.now();
    await cluster.startAgent('hv3', { stateDir: agent.stateDir, config: LONG_RESYNC });
    const missing = await cluster.waitForEvent((e) => e.event === 'vm.missing' && e.vm === uuid, SOON_MS, 'vm.missing at start-up');
    assert.equal(missing.host, 'hv3');
    const back = await cluster.waitForVm(uuid, (vm) => vm?.status === 'RUNNING' && pidOf(vm) !== pid, 60_000, 'the VM running again');
    assert.ok(pidAlive(pidOf(back)));
    assert.ok(Date.now() - t0 < 90_000, `running again ${Date.now() - t0} ms after the agent's start`);
    // Nothing drover runs is taken for foreign at start-up.
    assert.deepEqual((await eventsOf('hv3')).filter((e) => e.event === 'vm.foreign'), []);
  });
});
