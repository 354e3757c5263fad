/** `drover up`: embedded etcd + agent + demo VM, as `make run` uses it. */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/embedded/etcd-process.js';
import { DROVER_BIN, killQemusUnder, pidAlive, waitForSerialText, waitUntil } from '../helpers/agent-harness.js';

const run = promisify(execFile);

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
      const { stdout } = await run(DROVER_BIN, ['vm', 'list', '--json', '--etcd', `http://127.0.0.1:${port}`]);
      const vms = JSON.parse(stdout) as Array<{ name: string; status: string; host: string; runtime?: { pid: number } }>;
      const demo = vms.find((v) => v.name === 'demo');
      assert.equal(demo?.status, 'RUNNING');
      assert.equal(demo?.host, 'laptop');
      const pid = demo.runtime!.pid;
      assert.ok(pidAlive(pid));
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

  it('a drover up killed with -9 leaves an etcd behind that the next drover up on the same state dir replaces', async () => {
    const state = await mkdtemp(join(tmpdir(), 'drover-up-'));
    await chmod(state, 0o711);
    const port = await freePort();
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
      first.child.kill('SIGKILL');
      await first.exited;
      const second = start();
      await waitUntil(async () => (second.output().includes('drover is up') ? true : undefined), 60_000, `second up; output: ${second.output()}`);
      second.child.kill('SIGINT');
      assert.equal(await second.exited, 0);
    } finally {
      await rm(state, { recursive: true, force: true });
    }
  });
});
