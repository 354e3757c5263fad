import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { KvStore } from '../../src/store/kv-store.js';

describe('KvStore against real etcd', () => {
  let etcd: TestEtcd;
  let kv: KvStore;
  before(async () => {
    etcd = await startTestEtcd();
    kv = new KvStore(etcd.client);
  });
  after(async () => etcd.close());

  it('creates only when absent and updates only at the expected revision', async () => {
    const key = `${etcd.newPrefix()}/vm/a`;
    assert.equal(await kv.putIf(key, '{"n":1}', 'absent'), true);
    assert.equal(await kv.putIf(key, '{"n":2}', 'absent'), false);
    const first = await kv.get(key);
    assert.ok(first);
    assert.equal(await kv.putIf(key, '{"n":2}', first.modRevision), true);
    // A writer holding the old revision loses the race and changes nothing.
    assert.equal(await kv.putIf(key, '{"n":3}', first.modRevision), false);
    assert.equal((await kv.get(key))?.raw, '{"n":2}');
  });

  it('a guarded transaction writes only while the guard key exists and every compare holds', async () => {
    const p = etcd.newPrefix();
    const [guard, pool, vm, old] = [`${p}/leader`, `${p}/pool/a`, `${p}/vm/1`, `${p}/vm/0`];
    await kv.put(pool, '{}');
    await kv.put(old, '{}');
    const poolRev = (await kv.get(pool))!.modRevision;
    const create = () => kv.guardedTxn(guard, [{ key: vm, expected: 'absent' }, { key: pool, expected: poolRev }], [{ put: vm, raw: '{"n":1}' }, { delete: old }]);
    assert.equal(await create(), null, 'no guard key: nothing written');
    await kv.put(guard, 'me');
    const rev = await create();
    assert.ok(rev !== null);
    assert.equal((await kv.get(vm))?.modRevision, rev, 'resolves with the revision it wrote');
    assert.equal(await kv.get(old), null, 'both operations applied');
    assert.equal(await create(), null, 'the key exists now');
    await kv.delete(vm);
    await kv.put(pool, '{"changed":true}');
    assert.equal(await create(), null, 'the pool record moved on');
    assert.equal(await kv.get(vm), null);
  });

  it('watches from a listed revision without missing a change', async () => {
    const prefix = `${etcd.newPrefix()}/vm/`;
    await kv.put(`${prefix}x`, '1');
    const listed = await kv.list(prefix);
    await kv.put(`${prefix}y`, '2'); // written between list and watch
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => {
      void kv
        .watchPrefix(prefix, String(BigInt(listed.revision) + 1n), {
          onEvent: (e) => {
            if (e.type === 'put') seen.push(e.entry.key);
            if (seen.length === 2) resolve();
          },
          onBroken: () => undefined,
        })
        .then((w) => done.then(() => w.close()));
    });
    await kv.put(`${prefix}z`, '3');
    await done;
    assert.deepEqual(seen, [`${prefix}y`, `${prefix}z`]);
  });

  it('deletes a range of keys inclusively', async () => {
    const prefix = `${etcd.newPrefix()}/log/`;
    for (const id of ['001', '002', '003', '004']) await kv.put(prefix + id, '{}');
    await kv.deleteRange(`${prefix}001`, `${prefix}003`);
    assert.deepEqual((await kv.list(prefix)).entries.map((e) => e.key), [`${prefix}004`]);
  });
});

describe('EventLog retention against real etcd', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('a record\'s change and the event reporting it are committed together or not at all', async () => {
    const { EventLog } = await import('../../src/store/event-log.js');
    const { keySpace } = await import('../../src/contract/keys.js');
    const { VmRepository } = await import('../../src/store/vm-repository.js');
    const keys = keySpace(etcd.newPrefix());
    const kv = new KvStore(etcd.client);
    const log = new EventLog(kv, keys);
    const repo = new VmRepository(kv, keys);
    const uuid = '0b0b0b0b-0000-4000-8000-000000000001';
    const event = (message: string) => log.appendOp({ ts: new Date().toISOString(), host: 'hv1', level: 'info', event: 'vm.started', vm: uuid, message });
    await repo.create(uuid, { uuid, status: 'STARTING' });
    const stale = (await repo.get(uuid))!;
    await repo.update(uuid, (cur) => ({ ...JSON.parse(cur.raw), status: 'TO_STOP' }));

    // Lost the race: neither the record nor the event is written.
    assert.equal(await repo.replaceAndGet(stale, { uuid, status: 'RUNNING' }, [event('lost')]), null);
    assert.equal(JSON.parse((await repo.get(uuid))!.raw).status, 'TO_STOP');
    assert.deepEqual((await log.list()).map((e) => e.message), []);

    // Won it: both, at one revision.
    const current = (await repo.get(uuid))!;
    const written = await repo.replaceAndGet(current, { uuid, status: 'STOP' }, [event('stopped')]);
    assert.ok(written);
    const [ev] = (await kv.list(keys.logPrefix)).entries;
    assert.equal(ev?.modRevision, written.modRevision, 'the event carries the record write\'s revision: one transaction');
    assert.deepEqual((await log.list()).map((e) => e.message), ['stopped']);

    // A delete and its event likewise; update() retries with the event until it wins.
    assert.equal(await repo.deleteIf(current, [event('not deleted')]), false);
    await repo.update(uuid, () => 'delete', { also: [event('deleted')] });
    assert.equal(await repo.get(uuid), null);
    assert.deepEqual((await log.list()).map((e) => e.message), ['stopped', 'deleted']);
  });

  it('prunes the oldest events beyond the limit and lists the rest in time order', async () => {
    const { EventLog } = await import('../../src/store/event-log.js');
    const { keySpace } = await import('../../src/contract/keys.js');
    const log = new EventLog(new KvStore(etcd.client), keySpace(etcd.newPrefix()));
    for (let i = 0; i < 15; i++) {
      await log.append({ ts: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), host: 'hv1', level: 'info', event: 'vm.started', message: `n${i}`, vm: i % 2 ? 'a' : 'b' });
    }
    assert.equal(await log.prune(10), 5);
    const left = await log.list();
    assert.deepEqual(left.map((e) => e.message), Array.from({ length: 10 }, (_, i) => `n${i + 5}`));
    assert.equal(await log.prune(10), 0);
    assert.deepEqual((await log.list({ vm: 'a', limit: 2 })).map((e) => e.message), ['n11', 'n13']);
  });
});
