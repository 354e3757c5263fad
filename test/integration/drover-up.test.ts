/** `drover up`: embedded etcd + agent + demo VM, as `make run` uses it. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/embedded/etcd-process.js';
import { createEtcdClient } from '../../src/store/etcd-client.js';
import { DROVER_BIN, killQemusUnder, pidAlive, waitForSerialText, waitUntil } from '../helpers/agent-harness.js';

const run = promisify(execFile);

/** This process's environment without DROVER_* (no etcd settings leak in). */
function cliEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DROVER_')));
}

/**
 * drover up's etcd speaks TLS only, wants a client certificate from its CA
 * and has authentication on: a plain-HTTP client, a client without a
 * certificate, and the agent's own certificate outside its grants are all
 * refused; the admin certificate is let in.
 */
async function checkEtcdIsLocked(state: string, port: number): Promise<void> {
  const pki = join(state, 'pki');
  for (const f of ['ca.key', 'etcd.key', 'admin.key', 'api.key', 'host-laptop.key']) assert.equal((await stat(join(pki, f))).mode & 0o777, 0o600, `${f} is 0600`);
  assert.equal((await stat(pki)).mode & 0o777, 0o700);
  const files = (who: string) => ({ ca: join(pki, 'ca.crt'), cert: join(pki, `${who}.crt`), key: join(pki, `${who}.key`) });
  const refused = async (what: string, client: Etcd3, op: (c: Etcd3) => Promise<unknown>, why: RegExp): Promise<void> => {
    try {
      await assert.rejects(op(client), why, what);
    } finally {
      client.close();
    }
  };
  const url = `127.0.0.1:${port}`;
  await refused('a plain-HTTP client', createEtcdClient([`http://${url}`], { callTimeoutMs: 1500 }), (c) => c.get('/v1/vm/x').string(), /UNAVAILABLE|No connection/);
  await refused('a client without a certificate', createEtcdClient([`https://${url}`], { callTimeoutMs: 1500, tls: { ca: join(pki, 'ca.crt') } }), (c) => c.get('/v1/vm/x').string(), /certificate|UNAVAILABLE/);
  await refused("the agent reading P/auth/", createEtcdClient([url], { tls: files('host-laptop') }), (c) => c.getAll().prefix('/v1/auth/').keys(), /permission denied/);
  // (drover up's agent also runs the scheduler, which may write host records to mark one dead; another host's liveness stays out of reach.)
  await refused("the agent writing another host's liveness key", createEtcdClient([url], { tls: files('host-laptop') }), (c) => c.put('/v1/alive/other').value('{}').exec(), /permission denied/);
  await refused('the agent writing a cluster setting', createEtcdClient([url], { tls: files('host-laptop') }), (c) => c.put('/v1/config/image_store').value('{}').exec(), /permission denied/);
  const admin = createEtcdClient([url], { tls: files('admin') });
  try {
    assert.ok((await admin.getAll().prefix('/v1/auth/user/').keys()).length >= 1, 'the admin reads the users');
  } finally {
    admin.close();
  }
  // And the CLI pointed at it without TLS says why in one sentence.
  const plain = await run(DROVER_BIN, ['vm', 'list', '--etcd', `http://${url}`], { env: cliEnv() }).then(
    () => null,
    (err: { stderr: string; code: number }) => err,
  );
  assert.ok(plain, 'a plain-HTTP CLI is refused');
  assert.match(plain.stderr, /^drover: etcd at http:\/\/127\.0\.0\.1:\d+ /);
}

describe('drover up', () => {
  let dir = '';
  after(async () => {
    if (dir) {
      await killQemusUnder(dir);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('starts etcd and the agent, boots the demo VM, says where to look, and stops cleanly on Ctrl-C', async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-up-'));
    await chmod(dir, 0o711); // qemu, as drover-qemu, reaches its run dirs below (docs/security.md)
    const port = await freePort();
    const apiPort = await freePort();
    const child = spawn(DROVER_BIN, ['up', '--state-dir', dir, '--etcd-port', String(port), '--api-listen', `127.0.0.1:${apiPort}`, '--accel', 'tcg', '--demo', '--stop-vms', '--name', 'laptop'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitUntil(async () => (out.includes('drover is up') ? true : undefined), 90_000, '"drover is up"').catch((err: unknown) => {
        // What drover up said is the only clue to why it did not come up.
        throw new Error(`${(err as Error).message}; drover up printed:\n${out.split('\n').slice(-40).join('\n')}`);
      });
      assert.match(out, /demo VM is RUNNING/);
      // The one-time login link signs in once, as admin, and never again.
      const link = new RegExp(`http://127\\.0\\.0\\.1:${apiPort}/#login=(drl_[A-Za-z0-9_-]+)`).exec(out);
      assert.ok(link, `a login link is printed:\n${out}`);
      const login = () => fetch(`http://127.0.0.1:${apiPort}/api/v1/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: link[1] }) });
      const first = await login();
      assert.equal(first.status, 200);
      assert.equal(((await first.json()) as { user: string }).user, 'admin');
      const cookie = first.headers.get('set-cookie') ?? '';
      assert.match(cookie, /HttpOnly/i);
      const vmsWithCookie = await fetch(`http://127.0.0.1:${apiPort}/api/v1/vms`, { headers: { cookie: cookie.split(';')[0] as string } });
      assert.equal(vmsWithCookie.status, 200);
      assert.equal(((await vmsWithCookie.json()) as { items: Array<{ name: string }> }).items[0]?.name, 'demo');
      assert.equal((await login()).status, 401, 'the link works once');
      assert.match(out, /bin\/drover vm list/);
      assert.match(out, /serial console/);
      // The CLI beside it finds the endpoint and the admin certificate in the state dir (etcd-client.json).
      const { stdout } = await run(DROVER_BIN, ['vm', 'list', '--json'], { env: { ...cliEnv(), DROVER_STATE_DIR: dir } });
      const vms = JSON.parse(stdout) as Array<{ name: string; status: string; host: string; runtime?: { pid: number } }>;
      const demo = vms.find((v) => v.name === 'demo');
      assert.equal(demo?.status, 'RUNNING');
      assert.equal(demo?.host, 'laptop');
      const pid = demo.runtime!.pid;
      assert.ok(pidAlive(pid));
      await checkEtcdIsLocked(dir, port);
      // Let the guest boot far enough to hear the power button.
      const serial = /tail -f (\S+)/.exec(out)?.[1];
      assert.ok(serial, 'the serial log path is printed');
      await waitForSerialText(serial, 'DROVER-GUEST-READY');
      child.kill('SIGINT');
      assert.equal(await exited, 0);
      assert.match(out, /drover stopped/);
      assert.equal(pidAlive(pid), false, '--stop-vms stopped the demo VM');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('a drover up killed with -9 leaves an etcd behind that the next drover up on the same state dir replaces; below a 0700 directory its VM files go to /var/lib/drover/up', async () => {
    // A clone in root's 0700 home, as `make run` on a fresh machine: qemu's user cannot search it.
    const home = await mkdtemp(join(tmpdir(), 'drover-home-'));
    const state = join(home, 'state');
    const port = await freePort();
    let altDir = '';
    const start = () => {
      const child = spawn(DROVER_BIN, ['up', '--state-dir', state, '--etcd-port', String(port), '--accel', 'tcg', '--name', 'laptop'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      return { child, exited, output: () => out };
    };
    try {
      const first = start();
      await waitUntil(async () => (first.output().includes('drover is up') ? true : undefined), 60_000, 'first up');
      const moved = /VM files in (\/var\/lib\/drover\/up\/[0-9a-f]{12}): (.*)/.exec(first.output());
      assert.ok(moved, `drover up says where the VM files went:\n${first.output()}`);
      assert.match(moved[2] ?? '', new RegExp(`${home} has mode 0700`));
      altDir = moved[1] as string;
      assert.equal((await stat(join(altDir, 'vms'))).mode & 0o777, 0o711);
      first.child.kill('SIGKILL');
      await first.exited;
      const second = start();
      await waitUntil(async () => (second.output().includes('drover is up') ? true : undefined), 60_000, `second up; output: ${second.output()}`);
      assert.ok(second.output().includes(`VM files in ${altDir}`), 'the next drover up finds the same place');
      second.child.kill('SIGINT');
      assert.equal(await second.exited, 0);
    } finally {
      await rm(home, { recursive: true, force: true });
      if (altDir) await rm(altDir, { recursive: true, force: true });
    }
  });
});
