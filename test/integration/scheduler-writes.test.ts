/**
 * The leader's writes against a real etcd, with one Scheduler in this
 * process (no agents: host records and liveness keys are written by the
 * test). Its store is wrapped so the test can see every guarded transaction
 * and change a record, or remove the leader's key, just before one goes out.
 *
 *  - placements go up to `batchSize` per transaction;
 *  - a batch that fails because one record changed meanwhile is written one
 *    record at a time: the others land, the changed one is decided again on
 *    its new content, and every record is written SCHEDULED exactly once;
 *  - a batch refused because the leader's key is gone writes nothing;
 *  - a host that dies during a live migration leaves the record's migration
 *    `failed` with the reason, in the same write that kills or moves the VM.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { keySpace, type KeySpace } from '../../src/contract/keys.js';
import { silentLogger } from '../../src/lib/logger.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { KvStore, type ExpectedRevision, type KvOp, type WatchHandle } from '../../src/store/kv-store.js';
import { rawObject, VmRepository, type JsonObject } from '../../src/store/vm-repository.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { waitUntil } from '../helpers/agent-harness.js';

type Compare = { key: string; expected: ExpectedRevision };

/** A KvStore that logs every guarded transaction and may act just before one. */
class SpyKv extends KvStore {
  readonly txns: Array<{ records: number; ok: boolean }> = [];
  before: ((guardKey: string, compares: readonly Compare[]) => Promise<void>) | null = null;

  override async guardedTxn(guardKey: string, compares: readonly Compare[], ops: readonly KvOp[]): Promise<string | null> {
    await this.before?.(guardKey, compares);
    const rev = await super.guardedTxn(guardKey, compares, ops);
    this.txns.push({ records: compares.length, ok: rev !== null });
    return rev;
  }
}

describe('scheduler writes (real etcd, one scheduler in-process)', () => {
  let etcd: TestEtcd;
  let lease: ReturnType<TestEtcd['client']['lease']>;
  let leaseId: string;
  const stops: Array<() => Promise<void>> = [];

  before(async () => {
    etcd = await startTestEtcd();
    lease = etcd.client.lease(60);
    leaseId = await lease.grant();
  });
  after(async () => {
    for (const stop of stops.reverse()) await stop();
    lease.release();
    await etcd.close();
  });

  interface Env {
    keys: KeySpace;
    kv: KvStore;
    repo: VmRepository;
    spy: SpyKv;
    /** SCHEDULED puts seen per uuid by a watch. */
    scheduledWrites: Map<string, number>;
  }

  async function env(): Promise<Env> {
    const keys = keySpace(etcd.newPrefix());
    const kv = new KvStore(etcd.client);
    const scheduledWrites = new Map<string, number>();
    const watch: WatchHandle = await kv.watchPrefix(keys.vmPrefix, String(BigInt((await kv.list(keys.vmPrefix)).revision) + 1n), {
      onEvent: (e) => {
        const v = e.type === 'put' ? rawObject(e.entry.raw) : null;
        if (v?.status === 'SCHEDULED') scheduledWrites.set(String(v.uuid), (scheduledWrites.get(String(v.uuid)) ?? 0) + 1);
      },
      onBroken: () => undefined,
    });
    stops.push(() => watch.close());
    return { keys, kv, repo: new VmRepository(kv, keys), spy: new SpyKv(etcd.client), scheduledWrites };
  }

  async function addHost(e: Env, name: string, memory: number, lease_ = leaseId): Promise<void> {
    await e.kv.put(e.keys.host(name), JSON.stringify({ name, hostid: randomUUID(), ip: '127.0.0.1', status: 'ALIVE', cpus: 64, memory, reserved_memory: 0, free_memory: memory, version: 'test', heartbeat_at: '' }));
    await e.kv.put(e.keys.alive(name), '{}', lease_);
  }

  async function createVm(e: Env, fields: JsonObject = {}, spec: JsonObject = {}): Promise<string> {
    const uuid = randomUUID();
    await e.repo.create(uuid, { uuid, name: `vm-${uuid.slice(0, 8)}`, status: 'REQUESTED_NEW', spec: { memory: 1000, boot: { kernel: '/k' }, ...spec }, ...fields });
    return uuid;
  }

  function startScheduler(e: Env, opts: { batchSize?: number; failoverMargin?: number } = {}): Scheduler {
    const s = new Scheduler({
      client: etcd.client, keys: e.keys, kv: e.spy, logger: silentLogger(),
      policy: { strategy: 'spread', overheadMiB: 64, cpuOvercommit: 4 },
      electionTtl: 2, failoverMargin: opts.failoverMargin ?? 1, identity: `test:${randomUUID().slice(0, 8)}`,
      ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    });
    stops.push(() => s.stop());
    s.start();
    return s;
  }

  const get = async (e: Env, uuid: string): Promise<JsonObject> => rawObject((await e.repo.get(uuid))?.raw ?? 'null') ?? {};
  const allScheduled = (e: Env, uuids: readonly string[]) =>
    waitUntil(async () => (uuids.every((u) => e.scheduledWrites.has(u)) ? true : undefined), 20_000, `${uuids.length} records SCHEDULED`);

  /** The counter moves once the transaction has answered (the watch may see the write earlier). */
  const placedAll = (s: Scheduler, n: number) => waitUntil(async () => (s.placed >= n ? true : undefined), 20_000, `placed = ${n}`);

  it('a campaign that errs twice is given up once: one campaign in etcd afterwards, not two', async () => {
    // Found by test/chaos/host-faults.chaos.ts: a lost leader lease made the
    // campaign err twice, each error started a campaign, and two leaders ran.
    const e = await env();
    const s = startScheduler(e);
    const campaignKeys = async (): Promise<number> => (await e.kv.list(`${e.keys.prefix}/election/`)).entries.length;
    await waitUntil(async () => (s.isLeader ? true : undefined), 20_000, 'the scheduler to lead');
    assert.equal(await campaignKeys(), 1);
    const campaign = (s as unknown as { campaign: NodeJS.EventEmitter }).campaign;
    campaign.emit('error', new Error('lease lost'));
    campaign.emit('error', new Error('lease lost'));
    await waitUntil(async () => (s.isLeader ? true : undefined), 20_000, 'the scheduler to lead again');
    await new Promise((r) => setTimeout(r, 1500)); // a second campaign would have started by now
    assert.equal(await campaignKeys(), 1, 'one campaign of this scheduler in etcd');
  });

  it('writes up to batchSize placements per transaction', async () => {
    const e = await env();
    for (const h of ['a1', 'a2', 'a3', 'a4']) await addHost(e, h, 64 * 1064);
    const uuids: string[] = [];
    for (let i = 0; i < 40; i++) uuids.push(await createVm(e));
    const s = startScheduler(e);
    await allScheduled(e, uuids);
    await placedAll(s, 40);
    // In the order they answered, which need not be the order they went out.
    assert.deepEqual([...e.spy.txns].sort((a, b) => b.records - a.records), [{ records: 16, ok: true }, { records: 16, ok: true }, { records: 8, ok: true }]);
    assert.equal(s.placed, 40);
    assert.ok([...e.scheduledWrites.values()].every((n) => n === 1));
    const perHost = new Map<string, number>();
    for (const u of uuids) {
      const v = await get(e, u);
      perHost.set(String(v.host), (perHost.get(String(v.host)) ?? 0) + 1);
    }
    assert.deepEqual([...perHost.values()], [10, 10, 10, 10], 'spread over the four hosts, as one at a time would');
  });

  it('a batch where one record changed meanwhile still places the others, and the changed one is decided again', async () => {
    const e = await env();
    await addHost(e, 'big', 64 * 1064);
    await addHost(e, 'small', 4 * 1064);
    const uuids: string[] = [];
    for (let i = 0; i < 16; i++) uuids.push(await createVm(e));
    const victim = uuids[5]!;
    // Just before the first batch goes out, a user limits one of its records to `small`.
    e.spy.before = async (_guard, compares) => {
      if (compares.length < 2) return;
      e.spy.before = null;
      assert.ok(compares.some((c) => c.key === e.keys.vm(victim)), 'the victim is in the batch');
      const cur = (await e.repo.get(victim))!;
      const obj = rawObject(cur.raw)!;
      assert.ok(await e.kv.putIf(cur.key, JSON.stringify({ ...obj, spec: { ...(obj.spec as JsonObject), nodes: ['small'] } }), cur.modRevision));
    };
    const s = startScheduler(e);
    await allScheduled(e, uuids);
    await placedAll(s, 16);
    const [batch, ...rest] = e.spy.txns;
    assert.deepEqual(batch, { records: 16, ok: false }, 'the batch of 16 failed on the changed record');
    assert.equal(rest.filter((t) => t.records === 1 && t.ok).length, 16, '15 written one by one, then the victim decided again');
    assert.equal(rest.filter((t) => !t.ok).length, 1, 'only the victim lost');
    assert.equal(s.placed, 16);
    assert.ok([...e.scheduledWrites.values()].every((n) => n === 1), 'each record written SCHEDULED once');
    const v = await get(e, victim);
    assert.equal(v.host, 'small', 'decided again on its new spec.nodes');
    assert.deepEqual((v.spec as JsonObject).nodes, ['small'], "the user's change is kept");
    for (const u of uuids.filter((x) => x !== victim)) assert.equal((await get(e, u)).host, 'big');
  });

  it('a batch refused because the leader key is gone writes nothing, neither together nor one by one', async () => {
    const e = await env();
    await addHost(e, 'only', 64 * 1064);
    const uuids: string[] = [];
    for (let i = 0; i < 4; i++) uuids.push(await createVm(e));
    let removed = false;
    e.spy.before = async (guard) => {
      if (removed) return;
      removed = true;
      await e.kv.delete(guard); // a deposed leader that has not noticed yet
    };
    const s = startScheduler(e);
    await waitUntil(async () => (e.spy.txns.length >= 1 + 4 ? true : undefined), 20_000, 'the batch and its 4 single writes');
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(e.spy.txns.every((t) => !t.ok));
    assert.deepEqual(e.spy.txns.slice(0, 5).map((t) => t.records), [4, 1, 1, 1, 1]);
    assert.equal(s.placed, 0);
    for (const u of uuids) {
      const v = await get(e, u);
      assert.equal(v.status, 'REQUESTED_NEW');
      assert.equal(v.host, undefined);
    }
    assert.equal(e.scheduledWrites.size, 0);
    await s.stop();
  });

  it('a host that dies during a live migration: the migration is failed in the same write that kills or moves the VM', async () => {
    const e = await env();
    const dying = etcd.client.lease(60);
    const dyingId = await dying.grant();
    await addHost(e, 'src', 64 * 1064, dyingId);
    await addHost(e, 'dst', 64 * 1064);
    const progress = { transferred: 10, remaining: 90, total: 100, updated_at: '2026-01-01T00:00:00.000Z' };
    const sending = { target: 'dst', source: 'src', state: 'sending', requested_at: '2026-01-01T00:00:00.000Z', uri: 'tcp:127.0.0.1:4444', progress };
    const moved = await createVm(e, { host: 'src', status: 'MIGRATING', migration: sending }, { failover: true });
    const killed = await createVm(e, { host: 'src', status: 'MIGRATING', migration: { ...sending, state: 'ready', progress: undefined } });
    const old = { target: 'dst', source: 'src', state: 'completed', finished_at: '2025-12-31T00:00:00.000Z' };
    const done = await createVm(e, { host: 'src', status: 'RUNNING', migration: old });
    const s = startScheduler(e, { failoverMargin: 0.2 });
    await waitUntil(async () => (s.isLeader ? true : undefined), 20_000, 'leading');
    await new Promise((r) => setTimeout(r, 300)); // its first pass is over
    await dying.revoke();
    const finished = (v: JsonObject) => v.status === 'SCHEDULED' || v.status === 'KILLED';
    const m = await waitUntil(async () => { const v = await get(e, moved); return finished(v) ? v : undefined; }, 20_000, 'the failover VM moved');
    assert.equal(m.status, 'SCHEDULED');
    assert.equal(m.host, 'dst');
    const mm = m.migration as JsonObject;
    assert.equal(mm.state, 'failed');
    assert.equal(mm.error, 'host src died during the migration');
    assert.equal(typeof mm.finished_at, 'string');
    assert.deepEqual({ target: mm.target, source: mm.source, requested_at: mm.requested_at, uri: mm.uri, progress: mm.progress }, { target: 'dst', source: 'src', requested_at: sending.requested_at, uri: sending.uri, progress }, 'the other fields are kept');
    assert.ok((m.log as string[]).some((l) => /failed over from src \(host dead\) to dst; its migration to dst failed$/.test(l)));
    const k = await waitUntil(async () => { const v = await get(e, killed); return finished(v) ? v : undefined; }, 20_000, 'the other VM killed');
    assert.equal(k.status, 'KILLED');
    assert.equal((k.migration as JsonObject).state, 'failed');
    assert.equal((k.migration as JsonObject).error, 'host src died during the migration');
    const d = await waitUntil(async () => { const v = await get(e, done); return v.status === 'KILLED' ? v : undefined; }, 20_000, 'the VM with an old migration killed');
    assert.deepEqual(d.migration, old, 'a finished migration is left as it was');
  });
});
