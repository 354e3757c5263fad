/**
 * The API in front of a real agent (real etcd, real qemu under TCG), driven
 * by the CLI through --api with a user's token, as a user without etcd
 * access would: create, wait until RUNNING, list, stop, delete; another
 * user is refused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { addUser, createToken } from '../../src/auth/accounts.js';
import { startApi, type RunningApi } from '../../src/api/run-api.js';
import { AuthRepository } from '../../src/store/auth-repository.js';
import { apiEtcd, startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { DROVER_BIN, GUEST, GUEST_DIR, pidAlive, startCluster, type Cluster } from '../helpers/agent-harness.js';
import { quietLogger } from '../api/helpers.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function drover(args: string[], env: Record<string, string>, stdin = ''): Promise<Run> {
  return new Promise((resolve) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DROVER_')));
    const child = execFile(DROVER_BIN, args, { env: { ...clean, ...env }, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
    child.stdin?.end(stdin);
  });
}

describe('the API over a real agent, driven by the CLI with --api', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let api: RunningApi;
  let alice: Record<string, string>;
  let bob: Record<string, string>;

  before(async () => {
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    await cluster.startAgent('hv1', { config: { scheduler: true } });
    api = await startApi({ ...(await apiEtcd(etcd, cluster.prefix)), prefix: cluster.prefix, listen: '127.0.0.1:0', bootDirs: [GUEST_DIR], logger: quietLogger });
    const auth = new AuthRepository(cluster.kv, cluster.keys);
    for (const name of ['alice', 'bob']) await addUser(auth, { name, role: 'user', now: new Date() });
    alice = { DROVER_API_URL: api.url, DROVER_TOKEN: (await createToken(auth, { user: 'alice', now: new Date() })).token };
    bob = { DROVER_API_URL: api.url, DROVER_TOKEN: (await createToken(auth, { user: 'bob', now: new Date() })).token };
  });
  after(async () => {
    await api?.stop();
    await cluster?.close();
    await etcd?.close();
  });

  it('a user creates a VM, sees it RUNNING, stops and deletes it; another user cannot touch it', async () => {
    const record = { name: 'web-1', spec: { memory: 128, boot: { kernel: GUEST.kernel, initrd: GUEST.initrd, cmdline: 'console=ttyS0' }, nics: [{ network: 'user' }] } };
    const created = await drover(['vm', 'create', '-f', '-'], alice, JSON.stringify(record));
    assert.equal(created.code, 0, created.stderr);
    const uuid = created.stdout.trim();
    assert.match(uuid, /^[0-9a-f-]{36}$/);

    const started = await drover(['vm', 'start', 'web-1', '--wait=90'], alice);
    assert.equal(started.code, 0, started.stderr);
    assert.equal(started.stdout, `VM web-1 (${uuid}) is running.\n`);
    const vm = await cluster.getVm(uuid);
    assert.equal(vm?.status, 'RUNNING');
    assert.equal(vm?.owner, 'alice');
    assert.equal(vm?.host, 'hv1', 'the scheduler placed it');
    const pid = (vm?.runtime as { pid: number }).pid;
    assert.ok(pidAlive(pid));

    const listed = await drover(['vm', 'list', '-H', '-o', 'name,status,owner'], alice);
    assert.equal(listed.stdout.trim().split(/\s+/).join(' '), 'web-1 RUNNING alice');
    const bobList = await drover(['vm', 'list', '--json'], bob);
    assert.deepEqual(JSON.parse(bobList.stdout), []);
    const bobStop = await drover(['vm', 'stop', 'web-1'], bob);
    assert.equal(bobStop.code, 1);
    assert.equal(bobStop.stderr, 'drover: No VM matches "web-1".\n');
    const badToken = await drover(['vm', 'list'], { ...alice, DROVER_TOKEN: 'drt_0000000000000000_' + 'A'.repeat(43) });
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /^drover: Valid credentials are needed/);

    const stopped = await drover(['vm', 'stop', 'web-1', '--wait=90'], alice);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(stopped.stdout, `VM web-1 (${uuid}) is stopped.\n`);
    assert.equal(pidAlive(pid), false);

    const deleted = await drover(['vm', 'delete', 'web-1', '--wait=60'], alice);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(await cluster.getVm(uuid), null);
    const events = await cluster.events.list({ vm: uuid });
    const asked = events.filter((e) => e.event === 'vm.requested').map((e) => e.requestor);
    assert.deepEqual(asked, ['alice', 'alice', 'alice']);
  });

  it('usage errors through the API are exit 2, with one sentence', async () => {
    const noToken = await drover(['vm', 'list', '--api', api.url], {});
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /^drover: Going through the API needs a token/);
    const badUrl = await drover(['vm', 'list', '--api', 'ftp://x'], { DROVER_TOKEN: 'x' });
    assert.equal(badUrl.code, 2);
  });
});
