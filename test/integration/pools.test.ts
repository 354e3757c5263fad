/**
 * Pools end to end: a real etcd, one real `drover agent` running its
 * scheduler, real qemu guests under TCG, pools created and deleted with the
 * real `drover pool` command. The host's capacity is pinned with
 * reserved_memory so that a share means a known number of VMs: 900 MiB left
 * over (96 + 64) MiB per VM is 5 slots.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import type { StoredEvent } from '../../src/store/event-log.js';
import { rawObject, type JsonObject } from '../../src/store/vm-repository.js';
import { runDrover } from '../cli/helpers.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startCluster, waitUntil, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, guestSpec, type GuestFiles } from '../helpers/guest.js';

const SLOTS_MIB = 900;

describe('pools (real etcd, an agent with its scheduler, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let guest: GuestFiles;

  const drover = async (args: string[], stdin?: string) => {
    const res = await runDrover([...args, '--etcd', etcd.endpoint, '--prefix', cluster.prefix], stdin === undefined ? {} : { stdin });
    assert.equal(res.code, 0, `drover ${args.join(' ')}: ${res.stderr}`);
    return res.stdout;
  };
  const createPool = (record: JsonObject) => drover(['pool', 'create', '-f', '-'], JSON.stringify(record));
  const poolVms = async (name: string): Promise<JsonObject[]> =>
    (await cluster.repo.list()).vms.map((v) => rawObject(v.raw) ?? {}).filter((o) => o.pool === name);
  const poolRecord = async (name: string): Promise<JsonObject> => rawObject((await cluster.kv.get(cluster.keys.pool(name)))?.raw ?? 'null') ?? {};
  const poolStatus = async (name: string): Promise<JsonObject> => ((await poolRecord(name)).status ?? {}) as JsonObject;
  const running = async (name: string, n: number, timeoutMs = 60_000) =>
    waitUntil(async () => {
      const vms = await poolVms(name);
      return vms.length === n && vms.every((v) => v.status === 'RUNNING') ? vms : undefined;
    }, timeoutMs, `pool ${name} to have ${n} VM(s), all RUNNING`);
  const events = async (test: (e: StoredEvent) => boolean) => (await cluster.events.list()).filter(test);
  /** Deletes the pool with the CLI; its VMs get REQUESTED_DELETE (the last test waits for the agent to remove them). */
  const deletePool = async (name: string) => {
    assert.match(await drover(['pool', 'delete', name]), new RegExp(`^Pool ${name} deleted; its \\d+ VMs? (is|are) being deleted\\.\\n$`));
    assert.ok((await poolVms(name)).every((v) => v.status === 'REQUESTED_DELETE'));
  };

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    const memoryMiB = Math.floor(totalmem() / (1024 * 1024));
    await cluster.startAgent('hv1', { config: { scheduler: true, election_ttl: 2, reserved_memory: memoryMiB - SLOTS_MIB } });
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  it('malformed pool records get status.error and one event each, and do not stop the scheduler', async () => {
    await cluster.kv.put(cluster.keys.pool('bad'), JSON.stringify({ name: 'bad', count: 'two', template: { spec: guestSpec(guest) } }));
    await cluster.kv.put(cluster.keys.pool('garbage'), 'not json');
    const status = await waitUntil(async () => {
      const s = await poolStatus('bad');
      return typeof s.error === 'string' ? s : undefined;
    }, 20_000, 'status.error in the bad pool');
    assert.match(String(status.error), /^Field count is invalid: expected number, received string\.$/);
    await cluster.waitForEvent((e) => e.event === 'pool.error' && /Pool record garbage is invalid/.test(e.message), 10_000, 'pool.error for garbage');
    // They stay for the next test, which shows the scheduler carrying on beside them.
  });

  it('a share pool reaches its share and keeps it: a VM that is stopped is deleted and replaced', async () => {
    // 40% of 5 slots: 2 VMs. fizzle_seconds 0: a short run is no reason to back off here.
    assert.equal(await createPool({ name: 'share', target_share: 0.4, hosts: ['hv1'], fizzle_seconds: 0, template: { owner: 'ops', spec: guestSpec(guest, 'idle', { restart: 'on-failure' }) } }), 'Pool share created.\n');
    const [first, second] = await running('share', 2);
    assert.equal((await poolStatus('share')).target, 2);
    for (const vm of [first!, second!]) {
      assert.match(String(vm.name), /^share-[0-9a-f]{8}$/);
      assert.equal(vm.owner, 'ops');
      assert.equal(vm.host, 'hv1');
      assert.deepEqual((vm.spec as JsonObject).nodes, ['hv1']);
    }
    const victim = String(first!.uuid);
    await cluster.patchVm(victim, { status: 'TO_STOP' });
    const replaced = await waitUntil(async () => {
      const vms = await poolVms('share');
      return vms.length === 2 && vms.every((v) => v.status === 'RUNNING' && v.uuid !== victim) ? vms : undefined;
    }, 60_000, 'the stopped VM replaced by a new running one');
    assert.ok(replaced.some((v) => v.uuid === second!.uuid), 'the other VM was left alone');
    assert.equal(await cluster.getVm(victim), null, 'the finished VM was deleted');
    const finished = await events((e) => e.event === 'pool.vm_finished' && e.vm === victim);
    assert.equal(finished.length, 1);
    assert.match(finished[0]!.message, /ended \(STOP\) and is deleted; a new VM replaces it\.$/);
    assert.equal((await events((e) => e.event === 'pool.vm_created' && /^Pool share /.test(e.message))).length, 3);
    const table = await drover(['pool', 'list']);
    assert.match(table, /\nshare +40% +2 +2 +2 +- +-\n/);
    assert.equal((await events((e) => e.event === 'pool.error')).length, 2, 'one event per bad record, not one per pass');
    await deletePool('share');
    await cluster.kv.delete(cluster.keys.pool('bad'));
    await cluster.kv.delete(cluster.keys.pool('garbage'));
  });

  it('fizzle: a VM that ends within fizzle_seconds puts the pool in backoff, and nothing is created until it is over', async () => {
    // The poweroff guest stops itself about 1 s after booting: every run fizzles.
    await createPool({ name: 'fizzy', count: 1, fizzle_seconds: 30, backoff_seconds: 8, template: { spec: guestSpec(guest, 'poweroff', { restart: 'on-failure' }) } });
    const backoff = await cluster.waitForEvent((e) => e.event === 'pool.backoff' && /^Pool fizzy /.test(e.message), 60_000, 'pool.backoff');
    const status = await poolStatus('fizzy');
    const until = Date.parse(String(status.backoff_until));
    assert.ok(until > Date.parse(backoff.ts) + 6_000, `backoff_until ${String(status.backoff_until)} is about backoff_seconds after the fizzle`);
    assert.match(String(status.last_fizzle), /^VM fizzy-[0-9a-f]{8} ran [\d.]+ s, less than fizzle_seconds \(30\)\.$/);
    // During the backoff the pool has no VM at all.
    while (Date.now() < until - 500) {
      assert.deepEqual((await poolVms('fizzy')).filter((v) => v.status !== 'REQUESTED_DELETE'), [], 'no VM during the backoff');
      await new Promise((r) => setTimeout(r, 250));
    }
    // Afterwards one probe VM, created no earlier than backoff_until; it fizzles too and the backoff moves on.
    const created = await waitUntil(async () => {
      const c = await events((e) => e.event === 'pool.vm_created' && /^Pool fizzy /.test(e.message));
      return c.length >= 2 ? c : undefined;
    }, 20_000, 'a VM created after the backoff');
    assert.ok(Date.parse(created[1]!.ts) >= until, `created at ${created[1]!.ts}, backoff until ${String(status.backoff_until)}`);
    await waitUntil(async () => (Date.parse(String((await poolStatus('fizzy')).backoff_until)) > until ? true : undefined), 60_000, 'a second backoff');
    await deletePool('fizzy');
  });

  it('wallclock: a VM whose run reaches max_wallclock_seconds is stopped, then replaced', async () => {
    // backoff_seconds 600: if the stop were taken for a fizzle, nothing would replace the VM.
    await createPool({ name: 'short', count: 1, max_wallclock_seconds: 8, fizzle_seconds: 2, backoff_seconds: 600, template: { spec: guestSpec(guest, 'idle', { restart: 'on-failure' }) } });
    const [vm] = await running('short', 1);
    const uuid = String(vm!.uuid);
    const startedAt = Date.parse(String((vm!.runtime as JsonObject).started_at));
    const stop = await cluster.waitForEvent((e) => e.event === 'pool.wallclock' && e.vm === uuid, 30_000, 'pool.wallclock');
    const after = Date.parse(stop.ts) - startedAt;
    assert.ok(after >= 8000 && after < 15_000, `stopped ${after} ms after it started`);
    const [next] = await waitUntil(async () => {
      const vms = await poolVms('short');
      return vms.length === 1 && vms[0]!.uuid !== uuid && vms[0]!.status === 'RUNNING' ? vms : undefined;
    }, 60_000, 'a new VM replacing the stopped one');
    assert.notEqual(next!.uuid, uuid);
    assert.equal(await cluster.getVm(uuid), null);
    assert.equal((await poolStatus('short')).backoff_until, undefined, 'a wallclock stop is not a fizzle');
    await deletePool('short');
    // The agent removes every deleted pool VM, of this test and the ones before.
    await waitUntil(async () => ((await cluster.repo.list()).vms.length === 0 ? true : undefined), 30_000, 'every pool VM deleted');
  });
});
