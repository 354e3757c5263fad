/** `drover user` and `drover token` against a real etcd, as bin/drover subprocesses. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { verifyPassword } from '../../src/auth/secrets.js';
import type { PasswordHash } from '../../src/contract/auth-records.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster, lines, stdoutJson, stdoutText } from './helpers.js';

describe('drover user and drover token (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('adds users with and without a password, lists them without hashes, deletes them with their tokens', async () => {
    const c = cluster(etcd);
    assert.match(stdoutText(await c.drover(['user', 'add', 'alice', '--role', 'user'])), /^Added user alice \(user\); it has no password/);
    assert.equal((await c.drover(['user', 'add', 'bob', '--role', 'operator', '--password-stdin'], { stdin: 'correct horse\n' })).code, 0);
    const stored = JSON.parse((await c.kv.get(c.keys.auth.user('bob')))?.raw ?? '{}') as { password: PasswordHash };
    assert.equal(stored.password.scheme, 'scrypt');
    assert.ok(await verifyPassword('correct horse', stored.password));
    assert.ok(!JSON.stringify(stored).includes('correct horse'));
    const users = stdoutJson<Array<{ name: string; role: string; has_password: boolean; password?: unknown }>>(await c.drover(['user', 'list', '--json']));
    assert.deepEqual(users.map((u) => [u.name, u.role, u.has_password, 'password' in u]), [['alice', 'user', false, false], ['bob', 'operator', true, false]]);
    assert.deepEqual(lines(stdoutText(await c.drover(['user', 'list', '-H']))).map((l) => l.split(/\s+/).slice(0, 3).join(' ')), ['alice user no', 'bob operator yes']);
    const token = stdoutJson<{ id: string; token: string }>(await c.drover(['token', 'create', '--user', 'alice', '--json']));
    assert.deepEqual(stdoutJson<Array<{ id: string }>>(await c.drover(['token', 'list', '--json'])).map((t) => t.id), [token.id]);
    assert.equal((await c.drover(['user', 'delete', 'alice'])).code, 0);
    assert.equal(await c.kv.get(c.keys.auth.token(token.id)), null, 'its token went with it');
    const gone = await c.drover(['user', 'delete', 'alice']);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, 'drover: There is no user alice.\n');
  });

  it('creates a token shown once (only its hash stored), with an expiry and a role no higher than its user', async () => {
    const c = cluster(etcd);
    await c.drover(['user', 'add', 'carol', '--role', 'user']);
    const created = stdoutJson<{ id: string; token: string; role: string; expires_at: string }>(await c.drover(['token', 'create', '--user', 'carol', '--expires', '30d', '--json']));
    assert.match(created.token, /^drt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.equal(created.role, 'user');
    const days = (Date.parse(created.expires_at) - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days <= 30, `expires in ${days} days`);
    const raw = (await c.kv.get(c.keys.auth.token(created.id)))?.raw ?? '';
    assert.ok(!raw.includes(created.token.slice('drt_'.length + 17)), 'the secret is not stored');
    const text = await c.drover(['token', 'create', '--user', 'carol']);
    assert.match(text.stdout, /^drt_\S+\n$/);
    assert.match(text.stderr, /shown only now/);
    const higher = await c.drover(['token', 'create', '--user', 'carol', '--role', 'admin']);
    assert.equal(higher.code, 1);
    assert.match(higher.stderr, /^drover: A token of user carol \(role user\) cannot have the role admin/);
    assert.equal((await c.drover(['token', 'create', '--user', 'carol', '--role', 'auditor'])).code, 1, 'an auditor reads hosts, which a user cannot');
    assert.equal((await c.drover(['token', 'revoke', created.id])).code, 0);
    assert.equal(await c.kv.get(c.keys.auth.token(created.id)), null);
  });

  it('refuses bad input with one sentence: exit 2 for usage, 1 otherwise', async () => {
    const c = cluster(etcd);
    const badRole = await c.drover(['user', 'add', 'dave', '--role', 'root']);
    assert.equal(badRole.code, 2);
    assert.match(badRole.stderr, /^drover: option '--role <role>' argument 'root' is invalid/);
    const badName = await c.drover(['user', 'add', 'Dave/../x', '--role', 'user']);
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /^drover: The user name "Dave\/..\/x" is not valid/);
    const shortPw = await c.drover(['user', 'add', 'dave', '--role', 'user', '--password-stdin'], { stdin: 'short\n' });
    assert.equal(shortPw.code, 2);
    assert.equal(await c.kv.get(c.keys.auth.user('dave')), null, 'nothing written');
    await c.drover(['user', 'add', 'dave', '--role', 'user']);
    const twice = await c.drover(['user', 'add', 'dave', '--role', 'admin']);
    assert.equal(twice.code, 1);
    assert.equal(twice.stderr, 'drover: The user dave already exists.\n');
    const noUser = await c.drover(['token', 'create', '--user', 'nobody']);
    assert.equal(noUser.code, 1);
    assert.equal((await c.drover(['token', 'create', '--user', 'dave', '--expires', 'soon'])).code, 2);
    assert.equal((await c.drover(['token', 'revoke', '0000000000000000'])).code, 1);
  });
});
