/**
 * Snapshot requests carried out by the Agent over the fake hypervisor and a
 * real etcd (docs/snapshots.md): the conversation through the record, the
 * rollback of a running VM (stop, roll back, start again), bad requests that
 * fail with a sentence while the VM keeps running, and the periodic refresh.
 * The real-qemu proof is test/integration/snapshots.test.ts.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { openStateDir } from '../../src/agent/state-dir.js';
import { mergeConfigLayers } from '../../src/config/load-config.js';
import { keySpace } from '../../src/contract/keys.js';
import { FakeHypervisor } from '../../src/hypervisor/fake/fake-hypervisor.js';
import { FakeWorld } from '../../src/hypervisor/fake/fake-world.js';
import { silentLogger } from '../../src/lib/logger.js';
import { EventLog } from '../../src/store/event-log.js';
import { KvStore } from '../../src/store/kv-store.js';
import { rawObject, VmRepository, type JsonObject } from '../../src/store/vm-repository.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { waitUntil } from '../helpers/agent-harness.js';

interface Request {
  op: string;
  name: string;
  id: string;
  state: string;
  error?: string;
  restart?: boolean;
  deleted?: string[];
}

describe('snapshots: the agent over the fake hypervisor (real etcd)', () => {
  let etcd: TestEtcd;
  let dir: string;
  const agents: Agent[] = [];

  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), 'drover-snap-fake-'));
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop();
  });
  after(async () => {
    await etcd.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(extra: Record<string, unknown> = {}) {
    const prefix = etcd.newPrefix();
    const config = mergeConfigLayers([
      { source: 'test', values: { name: 'hv1', etcd: [etcd.endpoint], state_dir: join(dir, randomUUID()), prefix, resync_interval: 60, heartbeat_interval: 1, log_level: 'silent', ...extra } },
    ]);
    const world = new FakeWorld();
    const agent = new Agent({ config, client: etcd.client, hypervisor: new FakeHypervisor({ world }), stateDir: await openStateDir(config.state_dir), logger: silentLogger(), version: 'test' });
    agents.push(agent);
    const kv = new KvStore(etcd.client);
    const repo = new VmRepository(kv, keySpace(prefix));
    await agent.start();
    return { agent, world, repo, events: new EventLog(kv, keySpace(prefix)) };
  }

  async function runningVm(repo: VmRepository, disks: JsonObject[]): Promise<{ uuid: string; pid: number }> {
    const uuid = randomUUID();
    await repo.create(uuid, { uuid, name: `vm-${uuid.slice(0, 8)}`, host: 'hv1', spec: { memory: 64, boot: { kernel: '/k' }, disks } });
    const rec = await waitFor(repo, uuid, (r) => r.status === 'RUNNING', 'RUNNING');
    return { uuid, pid: (rec.runtime as { pid: number }).pid };
  }

  function waitFor(repo: VmRepository, uuid: string, test: (r: JsonObject) => boolean, what: string): Promise<JsonObject> {
    return waitUntil(async () => {
      const r = rawObject((await repo.get(uuid))?.raw ?? 'null');
      return r && test(r) ? r : undefined;
    }, 10_000, `${uuid}: ${what}`);
  }

  /** Writes a request as the CLI does and waits for its outcome. */
  async function ask(repo: VmRepository, uuid: string, op: string, name: string): Promise<JsonObject> {
    const id = randomUUID().slice(0, 8);
    await repo.update(uuid, (cur) => ({ ...(rawObject(cur.raw) ?? {}), snapshot_request: { op, name, id, state: 'requested', requested_at: new Date().toISOString() } }));
    return waitFor(repo, uuid, (r) => {
      const req = r.snapshot_request as Request | undefined;
      return req?.id === id && (req.state === 'done' || req.state === 'failed');
    }, `${op} ${name} to finish`);
  }
  const requestOf = (r: JsonObject): Request => r.snapshot_request as Request;
  const names = (r: JsonObject): string[] => ((r.snapshots as Array<{ name: string }> | undefined) ?? []).map((s) => s.name);

  it('creates, rolls back (stop, revert, start again) and deletes snapshots of a running VM through its record', async () => {
    const { world, repo, events } = await setup();
    const disks = [{ path: '/srv/a.qcow2' }, { path: '/srv/b.qcow2' }];
    const { uuid, pid } = await runningVm(repo, disks);

    const one = await ask(repo, uuid, 'create', 'one');
    assert.equal(requestOf(one).state, 'done', JSON.stringify(one.snapshot_request));
    assert.deepEqual(names(one), ['one']);
    assert.equal(one.status, 'RUNNING');
    assert.equal((one.runtime as { pid: number }).pid, pid, 'a snapshot of a running VM does not stop it');
    assert.deepEqual(world.diskSnapshots('/srv/b.qcow2').map((s) => s.name), ['one'], 'every disk');
    await ask(repo, uuid, 'create', 'two');
    await ask(repo, uuid, 'create', 'three');

    const back = await ask(repo, uuid, 'rollback', 'one');
    assert.deepEqual(requestOf(back), { ...requestOf(back), state: 'done', restart: true, deleted: ['two', 'three'] });
    assert.deepEqual(names(back), ['one']);
    assert.deepEqual(world.rollbacks, [{ path: '/srv/a.qcow2', name: 'one' }, { path: '/srv/b.qcow2', name: 'one' }]);
    const again = await waitFor(repo, uuid, (r) => r.status === 'RUNNING', 'RUNNING again');
    assert.notEqual((again.runtime as { pid: number }).pid, pid, 'stopped and started again');
    assert.ok((again.log as string[]).some((l) => l.endsWith('rolled back to snapshot one; deleted the newer snapshots two, three')), (again.log as string[]).join('\n'));

    const gone = await ask(repo, uuid, 'delete', 'one');
    assert.equal(requestOf(gone).state, 'done');
    assert.deepEqual(names(gone), []);
    // The event follows the record's `done` write: wait for it rather than race it.
    const snapshotEvents = async () => (await events.list()).filter((e) => e.vm === uuid && e.event.startsWith('vm.snapshot')).map((e) => e.event);
    const codes = await waitUntil(async () => ((await snapshotEvents()).length >= 5 ? snapshotEvents() : undefined), 5000, 'five snapshot events');
    assert.deepEqual(codes, ['vm.snapshot_created', 'vm.snapshot_created', 'vm.snapshot_created', 'vm.snapshot_rolled_back', 'vm.snapshot_deleted']);
  });

  it('rolls back a stopped VM without starting it', async () => {
    const { world, repo } = await setup();
    const { uuid } = await runningVm(repo, [{ path: '/srv/c.qcow2' }]);
    await ask(repo, uuid, 'create', 'base');
    await repo.update(uuid, (cur) => ({ ...(rawObject(cur.raw) ?? {}), status: 'TO_STOP' }));
    await waitFor(repo, uuid, (r) => r.status === 'STOP', 'STOP');
    const back = await ask(repo, uuid, 'rollback', 'base');
    assert.equal(requestOf(back).state, 'done');
    assert.equal(requestOf(back).restart, undefined);
    assert.equal(back.status, 'STOP');
    assert.equal(world.findLive(uuid), undefined);
  });

  it('fails bad requests with one sentence and leaves the VM running', async () => {
    const { world, repo } = await setup();
    const raw = '/srv/data.raw';
    world.setDiskFormat(raw, 'raw');
    const { uuid, pid } = await runningVm(repo, [{ path: '/srv/d.qcow2' }, { path: raw }]);
    const cases: Array<[string, string, string]> = [
      ['create', '../../etc/passwd', 'Snapshot name "../../etc/passwd" is invalid: use 1 to 64 letters, digits and "-_.:", starting with a letter or digit.'],
      ['create', '42', 'Snapshot name "42" is all digits, which qemu would read as a snapshot id; add a letter.'],
      ['revert', 'x', 'Snapshot operation "revert" is unknown; use create, rollback or delete.'],
      ['create', 'x', 'Disk 2 (/srv/data.raw) is raw, and only qcow2 disks can hold snapshots.'],
      ['rollback', 'nope', 'Disk 2 (/srv/data.raw) is raw, and only qcow2 disks can hold snapshots.'],
      ['delete', 'nope', `VM vm-${uuid.slice(0, 8)} has no snapshot named nope.`],
    ];
    for (const [op, name, error] of cases) {
      const r = await ask(repo, uuid, op, name);
      assert.deepEqual([requestOf(r).state, requestOf(r).error], ['failed', error], `${op} ${name}`);
      assert.equal(r.status, 'RUNNING');
      assert.equal((r.runtime as { pid: number }).pid, pid);
    }
    assert.equal(world.findLive(uuid)?.pid, pid);
    assert.deepEqual(world.diskSnapshots('/srv/d.qcow2'), [], 'nothing was taken');
  });

  it('refreshes the record every snapshot_update_interval with what the disks hold', async () => {
    const { world, repo } = await setup({ snapshot_update_interval: 1 });
    const { uuid } = await runningVm(repo, [{ path: '/srv/e.qcow2' }]);
    // Made behind drover's back (qemu-img by hand): the next refresh reports it.
    world.diskSnapshots('/srv/e.qcow2').push({ name: 'by-hand', id: '9', createdMs: Date.parse('2026-01-02T03:04:05Z') });
    const seen = await waitFor(repo, uuid, (r) => names(r).includes('by-hand'), 'the refresh');
    assert.deepEqual(seen.snapshots, [{ name: 'by-hand', created_at: '2026-01-02T03:04:05.000Z' }]);
  });
});
