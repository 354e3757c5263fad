/** /api/v1/vms over real HTTP and real etcd: owner scoping, admin-only fields, bad input, PATCH, paging, events, history. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { apiWorld, userVm, type ApiWorld } from './helpers.js';

describe('API VMs (real etcd, real HTTP)', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  async function world(fn: (w: ApiWorld, t: { alice: string; bob: string; root: string; audit: string }) => Promise<void>): Promise<void> {
    const w = await apiWorld(etcd);
    try {
      const tokens = { alice: await w.user('alice', 'user'), bob: await w.user('bob', 'user'), root: await w.user('root', 'admin'), audit: await w.user('audit', 'auditor') };
      await fn(w, tokens);
    } finally {
      await w.close();
    }
  }

  it("a user sees only its own VMs: others are absent from lists and 404 on every verb, by uuid and by name", () =>
    world(async (w, t) => {
      const mine = await w.call(t.alice, 'POST', '/api/v1/vms', userVm('alice-1'));
      assert.equal(mine.status, 202);
      assert.equal(mine.body.owner, 'alice');
      assert.equal(mine.body.status, 'REQUESTED_NEW');
      const theirs = await w.call(t.bob, 'POST', '/api/v1/vms', userVm('bob-1'));
      const bobUuid = String(theirs.body.uuid);
      const list = await w.call(t.alice, 'GET', '/api/v1/vms');
      assert.deepEqual(list.body.items?.map((v) => v.name), ['alice-1']);
      assert.equal(list.body.total, 1);
      for (const ref of [bobUuid, 'bob-1']) {
        for (const [method, path, body] of [
          ['GET', '', undefined],
          ['PATCH', '', { spec: { memory: 128 } }],
          ['DELETE', '', undefined],
          ['POST', '/start', undefined],
          ['POST', '/stop', undefined],
          ['POST', '/restart', undefined],
          ['GET', '/history', undefined],
        ] as const) {
          const res = await w.call(t.alice, method, `/api/v1/vms/${ref}${path}`, body);
          assert.equal(res.status, 404, `${method} ${ref}${path}`);
          assert.deepEqual(res.body, { error: `No VM matches ${JSON.stringify(ref)}.` }, 'the answer of a VM that does not exist');
        }
      }
      const bobs = await w.call(t.root, 'GET', `/api/v1/vms/${bobUuid}`);
      assert.equal(bobs.body.status, 'REQUESTED_NEW', "untouched by alice's attempts");
      assert.equal(bobs.body.spec && (bobs.body.spec as { memory: number }).memory, 64);
      // Every other role sees every VM.
      assert.equal((await w.call(t.audit, 'GET', '/api/v1/vms')).body.total, 2);
      assert.equal((await w.call(t.root, 'GET', '/api/v1/vms?owner=bob')).body.total, 1);
      // And the event list is scoped too.
      const events = await w.call(t.alice, 'GET', '/api/v1/events');
      assert.ok((events.body.items?.length ?? 0) >= 1);
      assert.ok(events.body.items?.every((e) => e.owner === 'alice'));
    }));

  it('refuses admin-only fields from a user with 403 naming the field, and writes nothing', () =>
    world(async (w, t) => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [userVm('x1', { host: 'hv1' }), 'host'],
        [userVm('x2', { owner: 'bob' }), 'owner'],
        [{ name: 'x3', spec: { memory: 64, disks: [{ path: '/etc/shadow' }] } }, 'spec.disks.0.path'],
        [{ name: 'x4', spec: { memory: 64, disks: [{ rbd: 'rbd/vm1' }] } }, 'spec.disks.0.rbd'],
        [{ name: 'x5', spec: { memory: 64, boot: { kernel: '/boot/vmlinuz' } } }, 'spec.boot.kernel'],
        [{ name: 'x6', spec: { memory: 64, boot: { kernel: '/srv/boot/vmlinuz', initrd: '/root/initrd' } } }, 'spec.boot.initrd'],
        [userVm('x7', { pool: 'batch' }), 'pool'],
        [{ name: 'x8', spec: { memory: 64, disks: [{ image: 'debian-12' }], nodes: ['hv1'] } }, 'spec.nodes'],
        [{ name: 'x9', spec: { memory: 64, disks: [{ image: 'debian-12' }], autostart_node: 'hv1' } }, 'spec.autostart_node'],
        [{ name: 'x10', spec: { memory: 64, disks: [{ image: 'debian-12' }], nics: [{ network: 'user' }, { network: 'br0' }] } }, 'spec.nics.1.network'],
        [userVm('x11', { uuid: '5a5a0000-0000-4000-8000-00000000000b' }), 'uuid'],
      ];
      for (const [body, field] of cases) {
        const res = await w.call(t.alice, 'POST', '/api/v1/vms', body);
        assert.equal(res.status, 403, field);
        assert.equal(res.body.field, field);
        assert.match(String(res.body.error), new RegExp(`Only an admin may set ${field.replaceAll('.', '\\.')}`));
      }
      assert.equal(await w.vmCount(), 0);
      // A kernel under an allowed boot directory is fine; an admin may set any of them.
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms', { name: 'ok1', spec: { memory: 64, boot: { kernel: '/srv/boot/vmlinuz' } } })).status, 202);
      assert.equal((await w.call(t.root, 'POST', '/api/v1/vms', userVm('ok2', { host: 'hv1', owner: 'alice', spec: { memory: 64, disks: [{ path: '/srv/vm.raw' }] } }))).status, 202);
      // PATCH: setting host is refused; a change that leaves the admin's path disk as it was is not.
      assert.equal((await w.call(t.alice, 'PATCH', '/api/v1/vms/ok2', { host: 'hv2' })).status, 403);
      const patched = await w.call(t.alice, 'PATCH', '/api/v1/vms/ok2', { spec: { memory: 96 } });
      assert.equal(patched.status, 200);
      assert.equal((patched.body.spec as { memory: number }).memory, 96);
      assert.equal((await w.call(t.alice, 'PATCH', '/api/v1/vms/ok2', { owner: 'bob' })).status, 403);
    }));

  it('an auditor reads everything and changes nothing (403)', () =>
    world(async (w, t) => {
      await w.call(t.alice, 'POST', '/api/v1/vms', userVm('a1'));
      assert.equal((await w.call(t.audit, 'POST', '/api/v1/vms', userVm('a2'))).status, 403);
      assert.equal((await w.call(t.audit, 'POST', '/api/v1/vms/a1/stop')).status, 403);
      assert.equal((await w.call(t.audit, 'PATCH', '/api/v1/vms/a1', { spec: { memory: 80 } })).status, 403);
      assert.equal((await w.call(t.audit, 'DELETE', '/api/v1/vms/a1')).status, 403);
      assert.equal((await w.call(t.audit, 'GET', '/api/v1/hosts')).status, 200);
      assert.equal((await w.call(t.alice, 'GET', '/api/v1/hosts')).status, 403, 'a user does not read hosts');
      assert.equal(await w.vmCount(), 1);
    }));

  it('bad input is 400 with one sentence and the field, every problem listed, nothing written', () =>
    world(async (w, t) => {
      const malformed = await w.call(t.alice, 'POST', '/api/v1/vms', '{"name": "x",');
      assert.equal(malformed.status, 400);
      assert.equal(malformed.body.error, 'The body is not valid JSON.');
      const wrong = await w.call(t.alice, 'POST', '/api/v1/vms', { name: 'Bad Name', spec: { memory: 'lots', vcpus: 0, disks: [{ image: 'debian-12' }] } });
      assert.equal(wrong.status, 400);
      assert.match(String(wrong.body.error), /^Field body\.\S+ is invalid: .+ \(and \d+ more problems?\)\.$/);
      const fields = (wrong.body.problems as Array<{ field: string }>).map((p) => p.field).sort();
      assert.deepEqual(fields, ['body.name', 'body.spec.memory', 'body.spec.vcpus']);
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms', userVm('x', { status: 'RUNNING' }))).status, 400, 'status is drover\'s');
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms', 'x'.repeat(300 * 1024))).status, 413);
      let deep: unknown = 'bottom';
      for (let i = 0; i < 40; i++) deep = { d: deep };
      const tooDeep = await w.call(t.alice, 'POST', '/api/v1/vms', userVm('deep', { x_deep: deep }));
      assert.equal(tooDeep.status, 400);
      assert.equal(tooDeep.body.error, 'The body is nested more than 32 levels deep.');
      assert.equal(await w.vmCount(), 0);
      await w.call(t.alice, 'POST', '/api/v1/vms', userVm('v1'));
      const badPatch = await w.call(t.alice, 'PATCH', '/api/v1/vms/v1', { spec: { memory: -1 } });
      assert.equal(badPatch.status, 400);
      assert.match(String(badPatch.body.error), /spec\.memory/);
      assert.equal((await w.call(t.alice, 'PATCH', '/api/v1/vms/v1', { uuid: '00000000-0000-4000-8000-000000000000' })).status, 400);
      assert.equal((await w.call(t.alice, 'PATCH', '/api/v1/vms/v1', { status: 'RUNNING' })).status, 400);
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms', userVm('v1'))).status, 409, 'a taken name');
      assert.equal((await w.call(t.alice, 'PATCH', '/api/v1/vms/v1', { name: 'v1-renamed' })).status, 200);
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms', userVm('v1-renamed'))).status, 409, 'the new name is taken');
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms', userVm('v1'))).status, 202, 'the old name is free again');
      assert.equal((await w.call(t.alice, 'GET', '/api/v1/vms?limit=0')).status, 400);
    }));

  it('PATCH is a merge patch; If-Match with a stale ETag is 409 and writes nothing', () =>
    world(async (w, t) => {
      const created = await w.call(t.alice, 'POST', '/api/v1/vms', userVm('p1', { x_label: 'keep' }));
      const etag = created.headers.get('etag') as string;
      assert.match(etag, /^"\d+"$/);
      const first = await w.call(t.alice, 'PATCH', '/api/v1/vms/p1', { spec: { memory: 128 }, x_label: null }, { 'if-match': etag, 'content-type': 'application/merge-patch+json' });
      assert.equal(first.status, 200);
      assert.equal((first.body.spec as { memory: number; disks: unknown[] }).disks.length, 1, 'merged, not replaced');
      assert.equal('x_label' in first.body, false, 'null removes');
      const stale = await w.call(t.alice, 'PATCH', '/api/v1/vms/p1', { spec: { memory: 256 } }, { 'if-match': etag });
      assert.equal(stale.status, 409);
      assert.equal(((await w.call(t.alice, 'GET', '/api/v1/vms/p1')).body.spec as { memory: number }).memory, 128);
    }));

  it('lists with filters, sort and cursor paging', () =>
    world(async (w, t) => {
      for (let i = 0; i < 7; i++) await w.call(t.root, 'POST', '/api/v1/vms', userVm(`n${i}`, { owner: i % 2 ? 'bob' : 'alice' }));
      const seen: string[] = [];
      let cursor = '';
      for (let page = 0; page < 5; page++) {
        const res = await w.call(t.root, 'GET', `/api/v1/vms?limit=3&sort=-name${cursor ? `&cursor=${cursor}` : ''}`);
        seen.push(...(res.body.items ?? []).map((v) => String(v.name)));
        if (res.body.next_cursor === null) break;
        cursor = String(res.body.next_cursor);
      }
      assert.deepEqual(seen, ['n6', 'n5', 'n4', 'n3', 'n2', 'n1', 'n0']);
      assert.deepEqual((await w.call(t.root, 'GET', '/api/v1/vms?owner=bob&q=n')).body.items?.map((v) => v.name), ['n1', 'n3', 'n5']);
      assert.equal((await w.call(t.root, 'GET', '/api/v1/vms?q=N5')).body.total, 1);
      assert.equal((await w.call(t.root, 'GET', '/api/v1/vms?cursor=garbage')).status, 400);
    }));

  it("start/stop/restart/delete write the request status and an event naming the requestor; history shows who changed what", () =>
    world(async (w, t) => {
      const created = await w.call(t.alice, 'POST', '/api/v1/vms', userVm('h1'));
      const uuid = String(created.body.uuid);
      assert.equal((await w.call(t.alice, 'POST', '/api/v1/vms/h1/stop')).status, 202);
      const again = await w.call(t.alice, 'POST', '/api/v1/vms/h1/stop');
      assert.equal(again.status, 200, 'already stopping: nothing written');
      assert.equal(again.body.status, 'TO_STOP');
      assert.equal((await w.call(t.root, 'POST', '/api/v1/vms/h1/start')).status, 202);
      await w.call(t.alice, 'PATCH', '/api/v1/vms/h1', { spec: { memory: 100 } });
      const history = await w.call(t.alice, 'GET', `/api/v1/vms/${uuid}/history`);
      const entries = history.body.entries as Array<{ requestor?: string; changes: Array<{ field: string; old?: unknown; new?: unknown }> }>;
      assert.deepEqual(entries.map((e) => e.requestor), ['alice', 'alice', 'root', 'alice']);
      assert.deepEqual(entries[1]?.changes, [{ field: 'status', old: 'REQUESTED_NEW', new: 'TO_STOP' }]);
      assert.deepEqual(entries[3]?.changes, [{ field: 'spec.memory', old: 64, new: 100 }]);
      const deleted = await w.call(t.alice, 'DELETE', '/api/v1/vms/h1');
      assert.equal(deleted.status, 202);
      assert.equal(deleted.body.status, 'REQUESTED_DELETE');
      const requested = await w.eventsOf('vm.requested');
      assert.equal(requested.length, 5);
      assert.ok(requested.every((e) => e.vm === uuid && e.requestor && e.token_id));
    }));

  it('lists follow records written straight into etcd (the watch-fed index), including deletions', () =>
    world(async (w, t) => {
      const uuid = '5a5a0000-0000-4000-8000-000000000001';
      await w.kv.put(w.keys.vm(uuid), JSON.stringify({ uuid, name: 'direct-1', owner: 'alice', status: 'STOP', spec: { memory: 64, disks: [{ image: 'debian-12' }] } }));
      const names = async () => (await w.call(t.alice, 'GET', '/api/v1/vms')).body.items?.map((v) => v.name);
      const until = async (want: unknown[]) => {
        for (let i = 0; i < 50 && JSON.stringify(await names()) !== JSON.stringify(want); i++) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(await names(), want);
      };
      await until(['direct-1']);
      await w.kv.delete(w.keys.vm(uuid));
      await until([]);
    }));

  it('the event stream is resumable by revision and shows a user only its own VMs', () =>
    world(async (w, t) => {
      const listed = await w.call(t.alice, 'GET', '/api/v1/events');
      const since = String(listed.body.revision);
      await w.call(t.bob, 'POST', '/api/v1/vms', userVm('bob-s'));
      await w.call(t.alice, 'POST', '/api/v1/vms', userVm('alice-s'));
      const ctl = new AbortController();
      const res = await fetch(`${w.url}/api/v1/events?since=${since}`, { headers: { authorization: `Bearer ${t.alice}`, accept: 'text/event-stream' }, signal: ctl.signal });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
      const reader = res.body!.getReader();
      let text = '';
      const deadline = Date.now() + 10_000;
      while (!(text.includes('event: log') && text.includes('"alice-s"')) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString();
      }
      ctl.abort();
      assert.match(text, /event: vm\n/);
      assert.match(text, /"name":"alice-s"/);
      assert.doesNotMatch(text, /bob-s/);
      const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
      assert.ok(ids.length >= 2 && ids.every((id) => id > Number(since)), 'ids are revisions after since');
    }));
});
