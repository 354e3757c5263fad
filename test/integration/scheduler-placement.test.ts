/**
 * The scheduler against a real etcd, three `drover scheduler` processes at
 * once, and host records written by the test (no agents: placement only
 * needs host records and liveness keys).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { keySpace, type KeySpace } from '../../src/contract/keys.js';
import { KvStore } from '../../src/store/kv-store.js';
import { rawObject, VmRepository, type JsonObject } from '../../src/store/vm-repository.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { DROVER_BIN, waitUntil } from '../helpers/agent-harness.js';

describe('scheduler placement (real etcd, three schedulers)', () => {
  let etcd: TestEtcd;
  let keys: KeySpace;
  let kv: KvStore;
  let repo: VmRepository;
  let leaseId: string;
  let lease: ReturnType<TestEtcd['client']['lease']>;
  const schedulers: ChildProcess[] = [];

  let schedulerEnv: NodeJS.ProcessEnv = process.env;

  function startScheduler(name: string): ChildProcess {
    const child = spawn(DROVER_BIN, ['scheduler', '--etcd', etcd.endpoint, '--prefix', keys.prefix, '--election-ttl', '2', '--failover-margin', '1', '--name', name, '--log-level', 'warn'], { stdio: 'ignore', env: schedulerEnv });
    schedulers.push(child);
    return child;
  }

  async function addHost(name: string, fields: JsonObject = {}): Promise<void> {
    await kv.put(keys.host(name), JSON.stringify({ name, hostid: randomUUID(), ip: '127.0.0.1', status: 'ALIVE', cpus: 4, memory: 4096, reserved_memory: 0, free_memory: 4096, version: 'test', heartbeat_at: new Date().toISOString(), ...fields }));
    await kv.put(keys.alive(name), JSON.stringify({ hostid: 'x', pid: 1, since: '' }), leaseId);
  }

  async function createVm(spec: JsonObject = {}, fields: JsonObject = {}): Promise<string> {
    const uuid = randomUUID();
    await repo.create(uuid, { uuid, name: `vm-${uuid.slice(0, 8)}`, status: 'REQUESTED_NEW', spec: { memory: 1000, boot: { kernel: '/k' }, ...spec }, ...fields });
    return uuid;
  }

  const get = async (uuid: string) => rawObject((await repo.get(uuid))?.raw ?? 'null');
  const waitFor = (uuid: string, test: (vm: JsonObject | null) => boolean, what: string) =>
    waitUntil(async () => {
      const v = await get(uuid);
      return test(v) ? v : undefined;
    }, 20_000, what);

  before(async () => {
    etcd = await startTestEtcd();
    keys = keySpace(etcd.newPrefix());
    kv = new KvStore(etcd.client);
    repo = new VmRepository(kv, keys);
    lease = etcd.client.lease(60);
    leaseId = await lease.grant();
    // The schedulers log in as the etcd user `scheduler`, with that role's grants only (docs/security.md).
    await etcd.authorize(keys.prefix);
    const tls = await etcd.tlsOf('scheduler');
    if (tls) schedulerEnv = { ...process.env, DROVER_ETCD_CERT: tls.cert, DROVER_ETCD_KEY: tls.key };
    for (const n of ['s1', 's2', 's3']) startScheduler(n);
  });
  after(async () => {
    for (const s of schedulers) s.kill('SIGKILL');
    lease.release();
    await etcd.close();
  });

  it('places on live hosts by memory (spread), honours nodes and autostart_node, and says why when nothing fits', async () => {
    await addHost('h1');
    await addHost('h2', { memory: 8192 });
    await addHost('h3', { drained: true, memory: 100000 });
    // Spread: h2 has the most free memory.
    const a = await createVm();
    assert.equal((await waitFor(a, (v) => v?.status === 'SCHEDULED', 'a placed'))?.host, 'h2');
    const b = await createVm({ nodes: ['h1'] });
    assert.equal((await waitFor(b, (v) => v?.status === 'SCHEDULED', 'b placed'))?.host, 'h1');
    const c = await createVm({ autostart_node: 'h1' });
    assert.equal((await waitFor(c, (v) => v?.status === 'SCHEDULED', 'c placed'))?.host, 'h1');
    const placed = await get(c);
    assert.ok((placed?.log as string[]).some((l) => / - scheduled on h1$/.test(l)));
    // 4096 − 2 × (1000 + 64) leaves 1968 on h1: a 3000 MiB VM limited to h1 cannot go.
    const d = await createVm({ memory: 3000, nodes: ['h1', 'h3'] });
    const pending = await waitFor(d, (v) => typeof v?.pending_reason === 'string', 'd pending');
    assert.equal(pending?.status, 'REQUESTED_NEW');
    assert.match(String(pending?.pending_reason), /1 drained, 1 without 3064 MiB free/);
    // Capacity changes (h1 grows): placement is retried.
    const h1 = JSON.parse((await kv.get(keys.host('h1')))!.raw) as JsonObject;
    await kv.put(keys.host('h1'), JSON.stringify({ ...h1, memory: 16384 }));
    const placedD = await waitFor(d, (v) => v?.status === 'SCHEDULED', 'd placed after capacity grew');
    assert.equal(placedD?.host, 'h1');
    assert.equal(placedD?.pending_reason, undefined);
  });

  it('three schedulers never double-place: 1,000 records, each written SCHEDULED exactly once, no host over capacity', async () => {
    for (let i = 0; i < 10; i++) await addHost(`m${i}`, { memory: 100 * 1064 + 10, cpus: 100 });
    const scheduledWrites = new Map<string, number>();
    const watch = await kv.watchPrefix(keys.vmPrefix, String(BigInt((await kv.list(keys.vmPrefix)).revision) + 1n), {
      onEvent: (e) => {
        if (e.type !== 'put') return;
        const v = rawObject(e.entry.raw);
        if (v?.status === 'SCHEDULED') scheduledWrites.set(String(v.uuid), (scheduledWrites.get(String(v.uuid)) ?? 0) + 1);
      },
      onBroken: () => undefined,
    });
    try {
      const uuids: string[] = [];
      const batch: Promise<string>[] = [];
      for (let i = 0; i < 1000; i++) batch.push(createVm({ memory: 1000, nodes: Array.from({ length: 10 }, (_, k) => `m${k}`) }));
      uuids.push(...(await Promise.all(batch)));
      await waitUntil(async () => (uuids.every((u) => scheduledWrites.has(u)) ? true : undefined), 60_000, 'all 1000 placed');
      await new Promise((r) => setTimeout(r, 500));
      assert.ok([...scheduledWrites.values()].every((n) => n === 1), 'each record was placed once');
      const perHost = new Map<string, number>();
      for (const u of uuids) {
        const h = String((await get(u))?.host);
        perHost.set(h, (perHost.get(h) ?? 0) + 1);
      }
      for (const [h, n] of perHost) assert.ok(n <= 100, `${h} got ${n} VMs, more than fit`);
      assert.equal([...perHost.values()].reduce((a, b) => a + b, 0), 1000);
    } finally {
      await watch.close();
    }
  });

  it('a killed leader is replaced within seconds', async () => {
    const election = etcd.client.namespace(`${keys.prefix}/`).election('scheduler');
    const leader = await election.leader();
    assert.ok(leader, 'someone leads');
    const pid = Number(String(leader).split(':')[1]);
    const victim = schedulers.find((s) => s.pid === pid);
    assert.ok(victim, `leader ${leader} is one of ours`);
    victim.kill('SIGKILL');
    await addHost('late', { memory: 8192 });
    const t0 = Date.now();
    const uuid = await createVm({ nodes: ['late'] });
    await waitFor(uuid, (v) => v?.status === 'SCHEDULED', 'placed by a new leader');
    assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
    const next = await election.leader();
    assert.notEqual(next, leader);
  });
});

describe('host drain (real etcd, a scheduler)', () => {
  it('a drained host gets no new VMs; undrain makes it eligible again', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const run = promisify(execFile);
    const etcd = await startTestEtcd();
    const keys = keySpace(etcd.newPrefix());
    const kv = new KvStore(etcd.client);
    const repo = new VmRepository(kv, keys);
    const lease = etcd.client.lease(60);
    const leaseId = await lease.grant();
    const sched = spawn(DROVER_BIN, ['scheduler', '--etcd', etcd.endpoint, '--prefix', keys.prefix, '--log-level', 'warn'], { stdio: 'ignore' });
    try {
      await kv.put(keys.host('only'), JSON.stringify({ name: 'only', hostid: 'h', ip: '127.0.0.1', status: 'ALIVE', cpus: 4, memory: 8192, reserved_memory: 0, free_memory: 8192, version: 't', heartbeat_at: '', extra: 'kept' }));
      await kv.put(keys.alive('only'), '{}', leaseId);
      const cli = (...args: string[]) => run(DROVER_BIN, [...args, '--etcd', etcd.endpoint, '--prefix', keys.prefix]);
      const { stdout } = await cli('host', 'drain', 'only');
      assert.match(stdout, /Host only is drained/);
      const uuid = randomUUID();
      await repo.create(uuid, { uuid, name: 'd1', status: 'REQUESTED_NEW', spec: { memory: 64, boot: { kernel: '/k' } } });
      const pending = await waitUntil(async () => {
        const v = rawObject((await repo.get(uuid))?.raw ?? 'null');
        return typeof v?.pending_reason === 'string' ? v : undefined;
      }, 20_000, 'pending because drained');
      assert.match(String(pending.pending_reason), /1 drained/);
      await cli('host', 'undrain', 'only');
      const placed = await waitUntil(async () => {
        const v = rawObject((await repo.get(uuid))?.raw ?? 'null');
        return v?.status === 'SCHEDULED' ? v : undefined;
      }, 20_000, 'placed after undrain');
      assert.equal(placed.host, 'only');
      const host = JSON.parse((await kv.get(keys.host('only')))!.raw) as Record<string, unknown>;
      assert.equal(host.extra, 'kept');
      assert.equal(host.drained, undefined);
      await assert.rejects(cli('host', 'drain', 'nosuch'), /No host is named "nosuch"/);
    } finally {
      sched.kill('SIGKILL');
      lease.release();
      await etcd.close();
    }
  });
});
