/** Snapshots, migration, stats history, images and pools through the API (real etcd, real HTTP). */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostStats, vmStats } from '../cli/fleet-fixture.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { apiWorld, userVm, type ApiWorld } from './helpers.js';

describe('API snapshots, migration, stats, images and pools (real etcd, real HTTP)', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  async function world(fn: (w: ApiWorld, t: { alice: string; bob: string; root: string; ops: string; audit: string }) => Promise<void>): Promise<void> {
    const w = await apiWorld(etcd);
    try {
      await fn(w, { alice: await w.user('alice', 'user'), bob: await w.user('bob', 'user'), root: await w.user('root', 'admin'), ops: await w.user('ops', 'operator'), audit: await w.user('audit', 'auditor') });
    } finally {
      await w.close();
    }
  }

  it("a snapshot request is written into the owner's VM record and logged; others get 404, an auditor 403", () =>
    world(async (w, t) => {
      const unplaced = await w.call(t.alice, 'POST', '/api/v1/vms', userVm('s0'));
      const early = await w.call(t.alice, 'POST', `/api/v1/vms/${String(unplaced.body.uuid)}/snapshots`, { name: 'x' });
      assert.equal(early.status, 409, 'no host yet: no agent to take it');
      assert.match(String(early.body.error), /no host yet/);
      const created = await w.call(t.root, 'POST', '/api/v1/vms', userVm('s1', { owner: 'alice', host: 'hv1' }));
      const uuid = String(created.body.uuid);
      const snap = await w.call(t.alice, 'POST', '/api/v1/vms/s1/snapshots', { name: 'before-upgrade' });
      assert.equal(snap.status, 202);
      const request = snap.body.request as { op: string; name: string; state: string };
      assert.deepEqual([request.op, request.name, request.state], ['create', 'before-upgrade', 'requested']);
      const stored = JSON.parse((await w.kv.get(w.keys.vm(uuid)))?.raw ?? '{}') as { snapshot_request?: { name: string } };
      assert.equal(stored.snapshot_request?.name, 'before-upgrade');
      const listed = await w.call(t.alice, 'GET', '/api/v1/vms/s1/snapshots');
      assert.equal((listed.body.request as { name: string }).name, 'before-upgrade');
      assert.equal((await w.call(t.bob, 'POST', '/api/v1/vms/s1/snapshots', { name: 'x' })).status, 404);
      assert.equal((await w.call(t.bob, 'GET', '/api/v1/vms/s1/snapshots')).status, 404);
      assert.equal((await w.call(t.bob, 'POST', '/api/v1/vms/s1/snapshots/before-upgrade/rollback')).status, 404);
      assert.equal((await w.call(t.audit, 'POST', '/api/v1/vms/s1/snapshots', { name: 'x' })).status, 403);
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms/s1/snapshots', { name: '../etc' })).status, 400);
      const ev = (await w.eventsOf('vm.requested')).find((e) => e.fields?.includes('snapshot_request'));
      assert.equal(ev?.requestor, 'alice');
    }));

  it('migration needs VM.Migrate (not a user\'s) and an ALIVE target host', () =>
    world(async (w, t) => {
      await w.call(t.root, 'POST', '/api/v1/vms', userVm('m1', { owner: 'alice', host: 'hv1' }));
      const refused = await w.call(t.alice, 'POST', '/api/v1/vms/m1/migrate', { to: 'hv2' });
      assert.equal(refused.status, 403);
      assert.match(String(refused.body.error), /VM\.Migrate/);
      const noHost = await w.call(t.ops, 'POST', '/api/v1/vms/m1/migrate', { to: 'hv2' });
      assert.equal(noHost.status, 404);
      assert.match(String(noHost.body.error), /hv2/);
      assert.equal((await w.call(t.ops, 'POST', '/api/v1/vms/m1/migrate', { to: 'no such/host' })).status, 400);
      assert.equal(((await w.call(t.root, 'GET', '/api/v1/vms/m1')).body as { host: string }).host, 'hv1');
    }));

  it('stats history comes from the revisions of P/stats/<host>, oldest first; a VM\'s from its host', () =>
    world(async (w, t) => {
      const created = await w.call(t.root, 'POST', '/api/v1/vms', userVm('st1', { owner: 'alice', host: 'hv1' }));
      const uuid = String(created.body.uuid);
      for (let i = 0; i < 5; i++) {
        const stats = hostStats('hv1', [vmStats(uuid, 'st1', { cpu_load: i / 10 }), vmStats('00000000-0000-4000-8000-000000000009', 'other')], { at: new Date(Date.UTC(2026, 11, 6, 12, 0, i * 10)).toISOString(), load: [i, i, i] });
        await w.kv.put(w.keys.stats('hv1'), JSON.stringify(stats));
      }
      const host = await w.call(t.audit, 'GET', '/api/v1/hosts/hv1/stats?points=3');
      assert.equal(host.status, 200);
      const points = host.body.points as Array<{ load: number[]; vm_count: number; vms?: unknown }>;
      assert.deepEqual(points.map((p) => p.load[0]), [2, 3, 4]);
      assert.equal(points[0]?.vm_count, 2);
      assert.equal('vms' in (points[0] ?? {}), false);
      assert.equal(host.body.truncated, true);
      const vm = await w.call(t.alice, 'GET', '/api/v1/vms/st1/stats');
      assert.equal(vm.body.host, 'hv1');
      assert.deepEqual((vm.body.points as Array<{ cpu_load: number; uuid: string }>).map((p) => p.cpu_load), [0, 0.1, 0.2, 0.3, 0.4]);
      assert.equal((await w.call(t.bob, 'GET', '/api/v1/vms/st1/stats')).status, 404);
      assert.equal((await w.call(t.alice, 'GET', '/api/v1/hosts/hv1/stats')).status, 403);
      assert.deepEqual((await w.call(t.root, 'GET', '/api/v1/hosts/hv9/stats')).body, { points: [], truncated: false });
    }));

  it('images are readable by users; pools by auditors and admins only', () =>
    world(async (w, t) => {
      const image = { uuid: '11111111-2222-4333-8444-555555555555', name: 'debian', version: '12', format: 'qcow2', size: 1, virtual_size: 1, sha256: 'a'.repeat(64), source: { type: 'file', path: '/x' }, created_at: new Date().toISOString(), state: 'active' };
      await w.kv.put(w.keys.image(image.uuid), JSON.stringify(image));
      const list = await w.call(t.alice, 'GET', '/api/v1/images');
      assert.deepEqual(list.body.items?.map((i) => i.name), ['debian']);
      assert.equal((await w.call(t.alice, 'GET', '/api/v1/images/debian:12')).body.uuid, image.uuid);
      assert.equal((await w.call(t.alice, 'GET', '/api/v1/images/nope')).status, 404);
      assert.equal((await w.call(t.alice, 'GET', '/api/v1/pools')).status, 403);
      assert.equal((await w.call(t.audit, 'GET', '/api/v1/pools')).status, 200);
    }));

  it('an operator drains and undrains a host (logged); a user and an auditor are refused, an unknown host is 404', () =>
    world(async (w, t) => {
      await w.kv.put(w.keys.host('hv1'), JSON.stringify({ name: 'hv1', ip: '127.0.0.1', cpus: 2, memory: 4096, reserved_memory: 512 }));
      const drained = await w.call(t.ops, 'POST', '/api/v1/hosts/hv1/drain');
      assert.equal(drained.status, 200, JSON.stringify(drained.body));
      assert.equal(drained.body.drained, true);
      assert.equal((JSON.parse((await w.kv.get(w.keys.host('hv1')))?.raw ?? '{}') as { drained?: boolean }).drained, true);
      assert.equal((await w.eventsOf('host.drained')).at(-1)?.requestor, 'ops');
      for (const who of [t.alice, t.audit]) {
        assert.equal((await w.call(who, 'POST', '/api/v1/hosts/hv1/undrain')).status, 403);
      }
      assert.equal((JSON.parse((await w.kv.get(w.keys.host('hv1')))?.raw ?? '{}') as { drained?: boolean }).drained, true, 'the refusals changed nothing');
      const undrained = await w.call(t.root, 'POST', '/api/v1/hosts/hv1/undrain');
      assert.equal(undrained.body.drained, undefined);
      assert.equal((await w.call(t.ops, 'POST', '/api/v1/hosts/hv9/drain')).status, 404);
      assert.equal((await w.call(t.ops, 'POST', '/api/v1/hosts/..%2Fx/drain')).status, 400);
    }));
});
