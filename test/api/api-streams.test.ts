/** The event stream's end on revocation, and `drover vm events [-f]` through --api (real etcd, real HTTP, real bin/drover). */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { DROVER_BIN, runDrover } from '../cli/helpers.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { apiWorld, userVm } from './helpers.js';

describe('API event streams (real etcd, real HTTP)', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('an event stream ends with an error event once its token is revoked', async () => {
    const w = await apiWorld(etcd);
    try {
      const token = await w.user('alice', 'user');
      const res = await fetch(`${w.url}/api/v1/events`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' } });
      assert.equal(res.status, 200);
      await w.auth.revokeToken(token.split('_')[1] as string);
      const text = await Promise.race([res.text(), new Promise<string>((_, reject) => setTimeout(() => reject(new Error('the stream did not end')), 10_000))]);
      assert.match(text, /event: error\ndata: \{"error":"The credentials of this stream are no longer valid\."\}/);
    } finally {
      await w.close();
    }
  });

  it('drover vm events lists and follows through --api, showing a user only its own VMs', async () => {
    const w = await apiWorld(etcd);
    try {
      const alice = await w.user('alice', 'user');
      const bob = await w.user('bob', 'user');
      await w.call(alice, 'POST', '/api/v1/vms', userVm('alice-1'));
      await w.call(bob, 'POST', '/api/v1/vms', userVm('bob-1'));
      const env = { DROVER_API_URL: w.url, DROVER_TOKEN: alice };
      const listed = await runDrover(['vm', 'events', '--json'], { env });
      assert.equal(listed.code, 0, listed.stderr);
      const events = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as { message: string; owner?: string });
      assert.deepEqual(events.map((e) => e.message), ['alice created VM alice-1.']);

      const child = spawn(DROVER_BIN, ['vm', 'events', '-f'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      const until = async (text: string) => {
        const deadline = Date.now() + 20_000;
        while (!out.includes(text) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        assert.ok(out.includes(text), `drover vm events -f printed:\n${out}`);
      };
      // Once the listing is printed, what follows can only come through the stream (from the listing's revision).
      await until('alice created VM alice-1');
      await w.call(bob, 'POST', '/api/v1/vms/bob-1/stop');
      await w.call(alice, 'POST', '/api/v1/vms/alice-1/stop');
      await until('asked to stop VM alice-1');
      child.kill('SIGINT');
      assert.equal(await exited, 0);
      assert.match(out, /vm\.requested +alice-1 +alice asked to stop VM alice-1/);
      assert.doesNotMatch(out, /bob/);
    } finally {
      await w.close();
    }
  });
});
