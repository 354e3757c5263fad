/**
 * Monitoring (seed 004 v1): a crash is reported (event and e-mail to a real
 * SMTP server) and the VM restarted; guest power-off follows the restart
 * policy; a crash loop ends in KILLED with a final e-mail.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startTestSmtp, type TestSmtp } from '../helpers/smtp.js';
import { GUEST, pidAlive, startCluster, waitForSerialText, type Cluster } from '../helpers/agent-harness.js';

const pidOf = (vm: Record<string, unknown> | null): number => (vm?.runtime as { pid: number }).pid;
const poweroffSpec = { boot: { kernel: GUEST.kernel, initrd: GUEST.initrdPoweroff, cmdline: 'console=ttyS0 quiet' } };

describe('agent monitoring (real etcd, real qemu, real SMTP)', () => {
  let etcd: TestEtcd;
  let smtp: TestSmtp;
  let cluster: Cluster;

  before(async () => {
    etcd = await startTestEtcd();
    smtp = await startTestSmtp();
    cluster = await startCluster(etcd);
    await cluster.startAgent('hv1', {
      config: { crash_limit: 3, crash_window: 120 },
      env: { DROVER_NOTIFY_EMAIL: 'sre@example.test', DROVER_SMTP_URL: smtp.url },
    });
  });
  after(async () => {
    await cluster?.close();
    await smtp?.close();
    await etcd?.close();
  });

  it('kill -9 of qemu: event vm.crashed, an e-mail, and a restart', async () => {
    const uuid = await cluster.createVm({ name: 'crashy' });
    const first = await cluster.waitForStatus(uuid, 'RUNNING');
    process.kill(pidOf(first), 'SIGKILL');
    const crashed = await cluster.waitForEvent((e) => e.vm === uuid && e.event === 'vm.crashed', 20_000, 'vm.crashed');
    assert.equal(crashed.level, 'error');
    assert.match(crashed.message, /SIGKILL/);
    const mail = await smtp.waitFor(new RegExp(`vm\\.crashed ${uuid}`));
    assert.deepEqual(mail.to, ['sre@example.test']);
    const back = await cluster.waitForVm(uuid, (vm) => vm?.status === 'RUNNING' && pidOf(vm) !== pidOf(first), 60_000, 'restart');
    assert.ok(pidAlive(pidOf(back)));
    await cluster.waitForEvent((e) => e.vm === uuid && e.event === 'vm.restarted', 10_000, 'vm.restarted');
  });

  it('guest power-off under restart=always: started again', async () => {
    const uuid = await cluster.createVm({ name: 'po-always', spec: { ...poweroffSpec, restart: 'always' } });
    const first = await cluster.waitForStatus(uuid, 'RUNNING');
    await cluster.waitForEvent((e) => e.vm === uuid && e.event === 'vm.poweroff', 60_000, 'vm.poweroff');
    await cluster.waitForVm(uuid, (vm) => vm?.status === 'RUNNING' && pidOf(vm) !== pidOf(first), 60_000, 'restart after power-off');
    // Stop it before it powers off a few more times.
    await cluster.patchVm(uuid, { status: 'TO_STOP', force_stop: true });
    await cluster.waitForVm(uuid, (vm) => vm?.status === 'STOP' || vm?.status === 'KILLED', 30_000);
  });

  it('guest power-off under restart=on-failure ends in STOP', async () => {
    const uuid = await cluster.createVm({ name: 'po-onfail', spec: { ...poweroffSpec, restart: 'on-failure' } });
    const running = await cluster.waitForStatus(uuid, 'RUNNING');
    await waitForSerialText((running.runtime as { serial_log: string }).serial_log, 'DROVER-GUEST-POWEROFF');
    const stopped = await cluster.waitForStatus(uuid, 'STOP', 30_000);
    assert.ok((stopped.log as string[]).some((l) => /guest powered off/.test(l)));
  });

  it('guest power-off under restart=never ends in STOP, a crash under never in KILLED', async () => {
    const po = await cluster.createVm({ name: 'po-never', spec: { ...poweroffSpec, restart: 'never' } });
    await cluster.waitForStatus(po, 'RUNNING');
    await cluster.waitForStatus(po, 'STOP', 60_000);

    const cr = await cluster.createVm({ name: 'crash-never', spec: { restart: 'never' } });
    const running = await cluster.waitForStatus(cr, 'RUNNING');
    process.kill(pidOf(running), 'SIGKILL');
    await cluster.waitForStatus(cr, 'KILLED', 20_000);
  });

  it('a crash loop ends in KILLED with a final e-mail', async () => {
    const uuid = await cluster.createVm({ name: 'loopy' });
    let pid = pidOf(await cluster.waitForStatus(uuid, 'RUNNING'));
    // crash_limit = 3: two crashes are restarted, the third is final.
    for (let i = 0; i < 2; i++) {
      process.kill(pid, 'SIGKILL');
      const old = pid;
      pid = pidOf(await cluster.waitForVm(uuid, (vm) => vm?.status === 'RUNNING' && pidOf(vm) !== old, 60_000, `restart ${i + 1}`));
    }
    process.kill(pid, 'SIGKILL');
    const killed = await cluster.waitForStatus(uuid, 'KILLED', 20_000);
    assert.ok((killed.log as string[]).some((l) => /3 times/.test(l)), (killed.log as string[]).join('\n'));
    await smtp.waitFor(new RegExp(`vm\\.killed ${uuid}`));
  });
});
