/** The API's front door over real HTTP and real etcd: credentials, sessions, CSRF, throttling, two API processes. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLoginLink, createToken } from '../../src/auth/accounts.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { apiWorld, userVm, type ApiWorld } from './helpers.js';

describe('API authentication (real etcd, real HTTP)', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  async function world(fn: (w: ApiWorld) => Promise<void>, settings = {}): Promise<void> {
    const w = await apiWorld(etcd, settings);
    try {
      await fn(w);
    } finally {
      await w.close();
    }
  }

  it('answers 401 on every route without credentials, and serves openapi.json and /healthz without', () =>
    world(async (w) => {
      for (const [method, path] of [
        ['GET', '/api/v1/vms'],
        ['POST', '/api/v1/vms'],
        ['GET', '/api/v1/vms/x'],
        ['PATCH', '/api/v1/vms/x'],
        ['DELETE', '/api/v1/vms/x'],
        ['POST', '/api/v1/vms/x/start'],
        ['GET', '/api/v1/vms/x/history'],
        ['GET', '/api/v1/hosts'],
        ['GET', '/api/v1/events'],
        ['GET', '/api/v1/users'],
        ['GET', '/api/v1/tokens'],
        ['GET', '/api/v1/session'],
      ] as const) {
        const res = await w.call(null, method, path, method === 'GET' || method === 'DELETE' ? undefined : {});
        assert.equal(res.status, 401, `${method} ${path}`);
        assert.match(String(res.body.error), /credentials/);
      }
      assert.equal((await w.call(null, 'GET', '/healthz')).status, 200);
      const doc = await w.call(null, 'GET', '/api/v1/openapi.json');
      assert.equal(doc.status, 200);
      assert.equal(doc.body.openapi, '3.1.0');
      const paths = doc.body.paths as Record<string, Record<string, Record<string, unknown>>>;
      assert.equal(paths['/api/v1/vms']?.get?.['x-drover-privilege'], 'VM.Audit');
      assert.equal(paths['/api/v1/vms']?.post?.['x-drover-privilege'], 'VM.Allocate');
      assert.equal(paths['/api/v1/vms/{id}/stop']?.post?.['x-drover-privilege'], 'VM.PowerMgmt');
    }));

  it('refuses a wrong, malformed, expired or revoked token, and a deleted user\'s token, on the next request', () =>
    world(async (w) => {
      const token = await w.user('alice', 'user');
      assert.equal((await w.call(token, 'GET', '/api/v1/vms')).status, 200);
      const wrong = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      assert.equal((await w.call(wrong, 'GET', '/api/v1/vms')).status, 401);
      assert.equal((await w.call('not-a-token', 'GET', '/api/v1/vms')).status, 401);
      assert.equal((await w.call(null, 'GET', '/api/v1/vms', undefined, { authorization: 'Basic YWxpY2U6eA==' })).status, 401);
      const old = await createToken(w.auth, { user: 'alice', expiresIn: 60, now: new Date(Date.now() - 120_000) });
      assert.equal((await w.call(old.token, 'GET', '/api/v1/vms')).status, 401, 'expired');
      const second = await createToken(w.auth, { user: 'alice', now: new Date() });
      assert.equal((await w.call(second.token, 'GET', '/api/v1/vms')).status, 200);
      assert.equal((await w.call(second.token, 'DELETE', `/api/v1/tokens/${second.id}`)).status, 200);
      assert.equal((await w.call(second.token, 'GET', '/api/v1/vms')).status, 401, 'revoked');
      await w.auth.deleteUser('alice');
      assert.equal((await w.call(token, 'GET', '/api/v1/vms')).status, 401, 'user deleted');
    }));

  it("never stores a token: only its sha256, and audit events name the token id, not the token", () =>
    world(async (w) => {
      const token = await w.user('alice', 'user');
      assert.equal((await w.call(token, 'POST', '/api/v1/vms', userVm('web-1'))).status, 202);
      const { entries } = await w.kv.list(w.keys.auth.prefix);
      // drt_<16 hex>_<secret>: the secret is base64url, which may itself hold "_".
      const secret = token.slice('drt_'.length + 17);
      assert.equal(secret.length, 43);
      for (const e of entries) assert.ok(!e.raw.includes(secret), `${e.key} holds no secret`);
      const [ev] = await w.eventsOf('vm.requested');
      assert.equal(ev?.requestor, 'alice');
      assert.equal(ev?.token_id, token.split('_')[1]);
      assert.ok(!JSON.stringify(ev).includes(secret));
    }));

  it('logs in with a password into an HttpOnly SameSite=Strict cookie; state changes need the CSRF token', () =>
    world(async (w) => {
      await w.user('alice', 'user', { password: 'correct horse' });
      const login = await w.call(null, 'POST', '/api/v1/login', { user: 'alice', password: 'correct horse' });
      assert.equal(login.status, 200);
      const setCookie = login.headers.get('set-cookie') ?? '';
      assert.match(setCookie, /drover_session=drs_/);
      assert.match(setCookie, /HttpOnly/i);
      assert.match(setCookie, /SameSite=Strict/i);
      assert.doesNotMatch(setCookie, /Secure/i, 'plain HTTP: no Secure flag');
      const cookie = { cookie: setCookie.split(';')[0] as string };
      const csrf = String(login.body.csrf_token);
      assert.equal((await w.call(null, 'GET', '/api/v1/vms', undefined, cookie)).status, 200);
      const noCsrf = await w.call(null, 'POST', '/api/v1/vms', userVm('web-1'), cookie);
      assert.equal(noCsrf.status, 403);
      assert.match(String(noCsrf.body.error), /CSRF/);
      const badCsrf = await w.call(null, 'POST', '/api/v1/vms', userVm('web-1'), { ...cookie, 'x-csrf-token': 'x'.repeat(43) });
      assert.equal(badCsrf.status, 403);
      assert.equal(await w.vmCount(), 0, 'nothing written');
      assert.equal((await w.call(null, 'POST', '/api/v1/vms', userVm('web-1'), { ...cookie, 'x-csrf-token': csrf })).status, 202);
      assert.equal((await w.call(null, 'POST', '/api/v1/logout', undefined, { ...cookie, 'x-csrf-token': csrf })).status, 200);
      assert.equal((await w.call(null, 'GET', '/api/v1/vms', undefined, cookie)).status, 401, 'logged out');
      assert.equal((await w.eventsOf('auth.login')).length, 1);
    }));

  it('a failed login does not say whether the user exists, is slowed, counted per user and address, then refused with 429', () =>
    world(
      async (w) => {
        await w.user('alice', 'user', { password: 'correct horse' });
        const unknown = await w.call(null, 'POST', '/api/v1/login', { user: 'nobody', password: 'whatever1' });
        const t0 = Date.now();
        const wrong = await w.call(null, 'POST', '/api/v1/login', { user: 'alice', password: 'wrong password' });
        assert.ok(Date.now() - t0 >= 50, 'slowed');
        assert.equal(unknown.status, 401);
        assert.equal(wrong.status, 401);
        assert.equal(unknown.body.error, wrong.body.error);
        assert.equal((await w.call(null, 'POST', '/api/v1/login', { user: 'alice', password: 'wrong again' })).status, 401);
        // The third failure from this address reached the limit: even the right password is refused unchecked.
        const refused = await w.call(null, 'POST', '/api/v1/login', { user: 'alice', password: 'correct horse' });
        assert.equal(refused.status, 429);
        assert.ok(refused.headers.get('retry-after'));
        const failed = await w.eventsOf('auth.login_failed');
        assert.equal(failed.length, 4);
        assert.ok(failed.every((e) => !JSON.stringify(e).includes('wrong password')), 'no password in the log');
      },
      { login: { maxFailures: 3, windowSeconds: 60, failureDelayMs: 50, sessionTtlSeconds: 3600 } },
    ));

  it('parallel guesses cannot all pass the limit: every attempt is counted before it is checked', () =>
    world(
      async (w) => {
        await w.user('alice', 'user', { password: 'correct horse' });
        const answers = await Promise.all(Array.from({ length: 12 }, () => w.call(null, 'POST', '/api/v1/login', { user: 'alice', password: 'guess guess' })));
        const statuses = answers.map((a) => a.status).sort();
        // At most 3 are checked; fewer when the two counters (per user, per address) interleave or a
        // contended counter gives up, which counts as over the limit. The rest are refused unchecked.
        const checked = statuses.filter((s) => s === 401).length;
        assert.ok(checked <= 3, statuses.join(','));
        assert.equal(statuses.filter((s) => s === 429).length, 12 - checked);
        assert.equal((await w.call(null, 'POST', '/api/v1/login', { user: 'alice', password: 'correct horse' })).status, 429, 'still refused');
        // One event per checked failure and at most one for the first refusal of each counter, not one per refusal.
        const logged = (await w.eventsOf('auth.login_failed')).length;
        assert.ok(logged >= checked && logged <= checked + 2, `${logged} events for ${checked} checked`);
      },
      { login: { maxFailures: 3, windowSeconds: 60, failureDelayMs: 10, sessionTtlSeconds: 3600 } },
    ));

  it("a demoted user's tokens stop working; a token made with a token expires no later and is revoked with it", () =>
    world(async (w) => {
      const aud = await w.user('carol', 'auditor');
      assert.equal((await w.call(aud, 'GET', '/api/v1/hosts')).status, 200);
      await w.auth.updateUser('carol', (u) => ({ ...u, role: 'user' }));
      assert.equal((await w.call(aud, 'GET', '/api/v1/vms')).status, 401, 'an auditor token of a user is refused, not widened to VM.PowerMgmt');
      const parent = await createToken(w.auth, { user: 'carol', expiresIn: 3600, now: new Date() });
      const child = await w.call(parent.token, 'POST', '/api/v1/tokens', {});
      assert.equal(child.status, 201);
      assert.equal(child.body.expires_at, parent.expires_at, 'capped at the parent\'s expiry');
      const grandchild = await w.call(String(child.body.token), 'POST', '/api/v1/tokens', { expires: '10m' });
      assert.equal(grandchild.status, 201);
      assert.equal((await w.call(String(grandchild.body.token), 'GET', '/api/v1/vms')).status, 200);
      await w.auth.revokeToken(parent.id);
      assert.equal((await w.call(String(child.body.token), 'GET', '/api/v1/vms')).status, 401);
      assert.equal((await w.call(String(grandchild.body.token), 'GET', '/api/v1/vms')).status, 401);
      const tooLong = await w.call(null, 'POST', '/api/v1/tokens', { expires: '99999999999d' });
      assert.equal(tooLong.status, 401);
      const own = await w.user('dave', 'user');
      const bad = await w.call(own, 'POST', '/api/v1/tokens', { expires: '99999999999d' });
      assert.equal(bad.status, 400);
    }));

  it("a one-time login link signs in once; an API token can open a session too and its revocation ends it", () =>
    world(async (w) => {
      const token = await w.user('root', 'admin');
      const link = await createLoginLink(w.auth, 'root', new Date());
      const first = await w.call(null, 'POST', '/api/v1/login', { token: link });
      assert.equal(first.status, 200);
      assert.equal(first.body.role, 'admin');
      assert.equal((await w.call(null, 'POST', '/api/v1/login', { token: link })).status, 401, 'used up');
      const viaToken = await w.call(null, 'POST', '/api/v1/login', { token });
      assert.equal(viaToken.status, 200);
      const cookie = { cookie: (viaToken.headers.get('set-cookie') ?? '').split(';')[0] as string };
      assert.equal((await w.call(null, 'GET', '/api/v1/session', undefined, cookie)).status, 200);
      await w.auth.revokeToken(token.split('_')[1] as string);
      assert.equal((await w.call(null, 'GET', '/api/v1/session', undefined, cookie)).status, 401);
    }));

  it('a token cannot have a role above its user, and a user cannot mint tokens for others', () =>
    world(async (w) => {
      const alice = await w.user('alice', 'user');
      await w.user('bob', 'user');
      assert.equal((await w.call(alice, 'POST', '/api/v1/tokens', { role: 'admin' })).status, 403);
      assert.equal((await w.call(alice, 'POST', '/api/v1/tokens', { user: 'bob' })).status, 403);
      const own = await w.call(alice, 'POST', '/api/v1/tokens', { expires: '1h' });
      assert.equal(own.status, 201);
      assert.match(String(own.body.token), /^drt_/);
      const listed = await w.call(alice, 'GET', '/api/v1/tokens');
      assert.ok(listed.body.items?.every((t) => t.user === 'alice' && !('token' in t) && !('secret_sha256' in t)));
      assert.equal((await w.call(alice, 'GET', '/api/v1/users')).status, 403);
      assert.equal((await w.call(alice, 'POST', '/api/v1/users', { name: 'eve', role: 'admin' })).status, 403);
    }));

  it('two API processes serve one etcd: a change through one is seen by the other, a revocation counts on both', () =>
    world(async (w) => {
      const token = await w.user('alice', 'user');
      const other = await w.startAnother();
      const created = await w.call(token, 'POST', '/api/v1/vms', userVm('web-1'));
      assert.equal(created.status, 202);
      const seen = await w.callAt(other.url, token, 'GET', '/api/v1/vms/web-1');
      assert.equal(seen.status, 200);
      assert.equal(seen.body.uuid, created.body.uuid);
      assert.equal((await w.callAt(other.url, token, 'DELETE', `/api/v1/tokens/${token.split('_')[1]}`)).status, 200);
      assert.equal((await w.call(token, 'GET', '/api/v1/vms')).status, 401);
    }));
});
