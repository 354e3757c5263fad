import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster, lines, uuidWith, vmRecord } from './helpers.js';

const UUID = uuidWith('5a5a0000');

describe('drover vm start/stop/restart/delete (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  const cases = [
    { args: ['start'], from: 'STOP', to: 'REQUESTED_START', force: undefined },
    { args: ['stop', '-F'], from: 'RUNNING', to: 'TO_STOP', force: true },
    { args: ['stop', '--force'], from: 'STOPPING', to: 'TO_STOP', force: true },
    { args: ['restart'], from: 'RUNNING', to: 'REQUESTED_RESTART', force: undefined },
    { args: ['delete'], from: 'STOP', to: 'REQUESTED_DELETE', force: undefined },
  ];
  for (const t of cases) {
    it(`vm ${t.args.join(' ')} on a ${t.from} VM writes ${t.to} and keeps unknown fields`, async () => {
      const c = cluster(etcd);
      const before = vmRecord(UUID, 'web-1', { status: t.from, x_owner_tag: ['a', 'b'], spec: { memory: 256, boot: { kernel: '/k' }, x_spec: 1 } });
      await c.putVm(before);
      const res = await c.drover(['vm', t.args[0] ?? '', 'web-1', ...t.args.slice(1)]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, `VM web-1 (${UUID}): ${t.to}${t.force ? ' (forced)' : ''}.\n`);
      const after = await c.getVm(UUID);
      const expected: Record<string, unknown> = { ...before, status: t.to };
      if (t.force) expected.force_stop = true;
      assert.deepEqual(after, expected);
    });
  }

  it('a plain stop writes TO_STOP and clears an old force_stop', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'RUNNING', force_stop: true }));
    const res = await c.drover(['vm', 'stop', UUID.slice(0, 8)]);
    assert.equal(res.stdout, `VM web-1 (${UUID}): TO_STOP.\n`);
    const after = await c.getVm(UUID);
    assert.equal(after?.status, 'TO_STOP');
    assert.equal('force_stop' in (after ?? {}), false);
  });

  it('stopping a stopped VM says so, writes nothing and exits 0', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'STOP' }));
    const rev = (await c.kv.get(c.keys.vm(UUID)))?.modRevision;
    const res = await c.drover(['vm', 'stop', 'web-1']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `VM web-1 (${UUID}) is already stopped.\n`);
    assert.equal((await c.kv.get(c.keys.vm(UUID)))?.modRevision, rev);
  });

  it('refuses to start a VM that is being deleted', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'REQUESTED_DELETE' }));
    const res = await c.drover(['vm', 'start', 'web-1']);
    assert.equal(res.code, 1);
    assert.equal(res.stderr, `drover: VM web-1 (${UUID}) is being deleted.\n`);
  });

  it('--wait follows the agent to RUNNING, printing each status to stderr', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'STOP' }));
    const run = c.drover(['vm', 'start', 'web-1', '--wait', '20']);
    await untilStatus(c.getVm, UUID, 'REQUESTED_START');
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'STARTING' }));
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'RUNNING' }));
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `VM web-1 (${UUID}) is running.\n`);
    assert.deepEqual(lines(res.stderr), [`VM web-1 (${UUID}): REQUESTED_START`, `VM web-1 (${UUID}): STARTING`, `VM web-1 (${UUID}): RUNNING`]);
  });

  it('--wait after a restart waits for a RUNNING written after the request', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'RUNNING' }));
    const run = c.drover(['vm', 'restart', 'web-1', '--wait=20', '--json']);
    await untilStatus(c.getVm, UUID, 'REQUESTED_RESTART');
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'STOPPING' }));
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'RUNNING', runtime: { pid: 7 } }));
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual((JSON.parse(res.stdout) as { runtime: unknown }).runtime, { pid: 7 });
  });

  it('--wait fails with the record\'s error when the VM ends in ERROR', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'STOP' }));
    const run = c.drover(['vm', 'start', 'web-1', '--wait']);
    await untilStatus(c.getVm, UUID, 'REQUESTED_START');
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'ERROR', error: 'qemu exited with code 1: could not open disk.' }));
    const res = await run;
    assert.equal(res.code, 1);
    assert.equal(lines(res.stderr).at(-1), `drover: VM web-1 (${UUID}) ended in ERROR: qemu exited with code 1: could not open disk.`);
  });

  it('--wait on delete returns once the key is gone; on stop it times out with the status', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'STOP' }));
    const del = c.drover(['vm', 'delete', 'web-1', '--wait', '20']);
    await untilStatus(c.getVm, UUID, 'REQUESTED_DELETE');
    await c.kv.delete(c.keys.vm(UUID));
    const res = await del;
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `VM web-1 (${UUID}) is deleted.\n`);

    const other = uuidWith('6b6b0000');
    await c.putVm(vmRecord(other, 'web-2', { status: 'RUNNING' }));
    const stop = await c.drover(['vm', 'stop', 'web-2', '--wait', '1']);
    assert.equal(stop.code, 1);
    assert.equal(lines(stop.stderr).at(-1), `drover: VM web-2 (${other}) did not reach STOP within 1 s; its status is TO_STOP.`);
  });

  it('--wait on an already stopped VM returns at once', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { status: 'STOP' }));
    const res = await c.drover(['vm', 'stop', 'web-1', '--wait', '5']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `VM web-1 (${UUID}) is stopped.\n`);
  });

  it('a bad --wait value is a usage error', async () => {
    const c = cluster(etcd);
    const res = await c.drover(['vm', 'start', '--wait', 'web-1']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^drover: option '--wait \[seconds\]' argument 'web-1' is invalid; it must be a number of seconds/);
  });
});

async function untilStatus(get: (uuid: string) => Promise<Record<string, unknown> | null>, uuid: string, status: string): Promise<void> {
  const deadline = Date.now() + 30_000; // generous: on a loaded machine, starting node takes seconds
  while (Date.now() < deadline) {
    if ((await get(uuid))?.status === status) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`record never reached ${status}`);
}
