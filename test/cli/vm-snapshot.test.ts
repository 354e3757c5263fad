/**
 * `drover vm snapshot ...` against a real etcd, with no agent: what the CLI
 * refuses by itself, the request it writes, and how `--wait` follows the
 * outcome an agent writes (here the test writes it, as an agent would).
 * The agent's side: test/agent/snapshots-over-fake.test.ts and
 * test/integration/snapshots.test.ts.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster, stdoutJson, uuidWith, vmRecord, type Cluster } from './helpers.js';

const UUID = uuidWith('5a9a0000');
const LABEL = `web-1 (${UUID})`;
const qcow2Vm = (extra: Record<string, unknown> = {}) =>
  vmRecord(UUID, 'web-1', { spec: { memory: 256, disks: [{ path: '/srv/web-1.qcow2' }, { path: '/srv/data.qcow2', format: 'qcow2' }] }, ...extra });

/** Polls the record until the CLI's request is in it; returns the request. */
async function requestIn(c: Cluster): Promise<Record<string, unknown>> {
  for (let i = 0; i < 200; i++) {
    const req = (await c.getVm(UUID))?.snapshot_request as Record<string, unknown> | undefined;
    if (req?.state === 'requested') return req;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the CLI wrote no request');
}

/** Writes an outcome into the request, as the VM's agent would (a plain put: the test is the only other writer). */
async function agentWrites(c: Cluster, fields: Record<string, unknown>, request: Record<string, unknown>): Promise<void> {
  const rec = (await c.getVm(UUID)) ?? {};
  await c.putVm({ ...rec, ...fields, snapshot_request: { ...(rec.snapshot_request as object), ...request } });
}

describe('drover vm snapshot (real etcd, real bin/drover, no agent)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('refuses an unknown VM, a bad name, a raw disk, an unknown snapshot, a taken name, with one sentence', async () => {
    const c = cluster(etcd);
    await c.putVm(qcow2Vm({ snapshots: [{ name: 'base', created_at: '2026-11-22T09:00:00.000Z' }] }));
    const cases: Array<[string[], number, string]> = [
      [['create', 'web-9', 'x'], 1, 'drover: No VM matches "web-9".'],
      [['create', 'web-1', '../../etc/passwd'], 2, 'drover: Snapshot name "../../etc/passwd" is invalid: use 1 to 64 letters, digits and "-_.:", starting with a letter or digit.'],
      [['create', 'web-1', '$(reboot)'], 2, 'drover: Snapshot name "$(reboot)" is invalid: use 1 to 64 letters, digits and "-_.:", starting with a letter or digit.'],
      [['rollback', 'web-1', '3'], 2, 'drover: Snapshot name "3" is all digits, which qemu would read as a snapshot id; add a letter.'],
      [['rollback', 'web-1', 'nope'], 1, `drover: VM ${LABEL} has no snapshot named nope; \`drover vm snapshot list\` shows them.`],
      [['delete', 'web-1', 'nope'], 1, `drover: VM ${LABEL} has no snapshot named nope; \`drover vm snapshot list\` shows them.`],
      [['create', 'web-1', 'base'], 1, `drover: VM ${LABEL} already has a snapshot named base.`],
    ];
    for (const [args, code, stderr] of cases) {
      const res = await c.drover(['vm', 'snapshot', ...args]);
      assert.deepEqual([res.code, res.stderr.trim(), res.stdout], [code, stderr, ''], args.join(' '));
    }
    const raw = uuidWith('5a9a0001');
    await c.putVm(vmRecord(raw, 'db-1', { spec: { memory: 256, disks: [{ path: '/srv/db.qcow2' }, { path: '/srv/db,data.img', format: 'raw' }] } }));
    const res = await c.drover(['vm', 'snapshot', 'create', 'db-1', 'x']);
    assert.equal(res.code, 1);
    assert.equal(res.stderr, `drover: VM db-1 (${raw}) cannot be snapshotted: disk 2 (/srv/db,data.img) is raw, and only qcow2 disks can hold snapshots.\n`);
    const rec = await c.getVm(UUID);
    assert.equal(rec?.snapshot_request, undefined, 'nothing was written');
  });

  it('--no-wait writes the request and keeps every other field; a second request is refused while one is under way', async () => {
    const c = cluster(etcd);
    const before = qcow2Vm({ x_tag: [1, 2] });
    await c.putVm(before);
    const res = await c.drover(['vm', 'snapshot', 'create', 'web-1', 'before-upgrade', '--no-wait']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `VM ${LABEL}: snapshot create before-upgrade requested.\n`);
    const after = await c.getVm(UUID);
    const req = after?.snapshot_request as Record<string, unknown>;
    assert.deepEqual({ ...after, snapshot_request: undefined }, { ...before, snapshot_request: undefined });
    assert.deepEqual(Object.keys(req).sort(), ['id', 'name', 'op', 'requested_at', 'state']);
    assert.deepEqual([req.op, req.name, req.state], ['create', 'before-upgrade', 'requested']);
    assert.match(String(req.id), /^[0-9a-f]{12}$/);
    const again = await c.drover(['vm', 'snapshot', 'create', 'web-1', 'other', '--no-wait']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^drover: VM web-1 \(.+\) has a snapshot create before-upgrade under way since .+; wait for it to finish\.\n$/);
  });

  it('waits for the outcome: created, or the failure sentence with exit 1', async () => {
    const c = cluster(etcd);
    await c.putVm(qcow2Vm());
    const running = c.drover(['vm', 'snapshot', 'create', 'web-1', 'one', '--wait=20']);
    await requestIn(c);
    await agentWrites(c, {}, { state: 'running' });
    await agentWrites(c, { snapshots: [{ name: 'one', created_at: '2026-11-22T09:00:00.000Z' }] }, { state: 'done' });
    const res = await running;
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `Snapshot one of VM ${LABEL} created.\n`);
    assert.match(res.stderr, /snapshot create one requested/);

    const failing = c.drover(['vm', 'snapshot', 'delete', 'web-1', 'one', '--json']);
    await requestIn(c);
    await agentWrites(c, {}, { state: 'failed', error: 'The disk /srv/web-1.qcow2 is in use by another process (qemu-img could not lock it).' });
    const bad = await failing;
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr.trim().split('\n').at(-1), `drover: The snapshot delete one of VM ${LABEL} failed: The disk /srv/web-1.qcow2 is in use by another process (qemu-img could not lock it).`);
  });

  it('a rollback of a running VM is followed until it runs again', async () => {
    const c = cluster(etcd);
    await c.putVm(qcow2Vm({ snapshots: [{ name: 'a' }, { name: 'b' }] }));
    const running = c.drover(['vm', 'snapshot', 'rollback', 'web-1', 'a', '--wait=20']);
    await requestIn(c);
    await agentWrites(c, { status: 'REQUESTED_START', snapshots: [{ name: 'a' }] }, { state: 'done', restart: true, deleted: ['b'] });
    await new Promise((r) => setTimeout(r, 300));
    await agentWrites(c, { status: 'RUNNING' }, {});
    const res = await running;
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, `VM ${LABEL} rolled back to snapshot a; deleted the newer snapshot b; it is running again.\n`);
    assert.match(res.stderr, /rolled back; starting it again \(REQUESTED_START\)/);
  });

  it('lists the snapshots as a table or JSON, and says what is under way', async () => {
    const c = cluster(etcd);
    await c.putVm(qcow2Vm({
      snapshots: [{ name: 'base', created_at: '2026-11-22T09:00:00.000Z' }, { name: 'half', created_at: '2026-11-22T10:00:00.000Z', incomplete: true }],
      snapshot_request: { op: 'create', name: 'next', id: 'x', state: 'requested' },
    }));
    const res = await c.drover(['vm', 'snapshot', 'list', 'web-1']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, ['NAME  CREATED                   INCOMPLETE', 'base  2026-11-22T09:00:00.000Z  -', 'half  2026-11-22T10:00:00.000Z  yes', ''].join('\n'));
    assert.equal(res.stderr, `VM ${LABEL}: snapshot create next is under way.\n`);
    const json = stdoutJson<{ uuid: string; snapshots: unknown[]; snapshot_request: { name: string } }>(await c.drover(['vm', 'snapshot', 'list', UUID.slice(0, 8), '--json']));
    assert.equal(json.uuid, UUID);
    assert.equal(json.snapshots.length, 2);
    assert.equal(json.snapshot_request.name, 'next');
  });
});
