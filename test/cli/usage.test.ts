import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { freePort } from '../../src/embedded/etcd-process.js';
import { lines, runDrover } from './helpers.js';

describe('drover usage, help and exit codes (no etcd needed)', { concurrency: true }, () => {
  for (const args of [['vm', 'lst'], ['vm', 'get'], ['vm', 'get', 'a', 'b'], ['vm']]) {
    it(`exits 2 on a usage error: drover ${args.join(' ')}`, async () => {
      const res = await runDrover(args);
      assert.equal(res.code, 2, res.stderr);
      assert.equal(res.stdout, '');
      if (args.length > 1) {
        assert.equal(lines(res.stderr).length, 1);
        assert.match(res.stderr, /^drover: .*; see `drover [a-z ]+--help`\.\n$/);
      }
    });
  }

  it('suggests the option meant', async () => {
    const res = await runDrover(['vm', 'list', '--jsn']);
    assert.equal(res.stderr, "drover: unknown option '--jsn' (did you mean --json?); see `drover vm list --help`.\n");
  });

  it('fails with one line when etcd is unreachable (a closed port)', async () => {
    const port = await freePort(); // nothing listens there
    const res = await runDrover(['vm', 'list', '--etcd', `http://127.0.0.1:${port}`]);
    assert.equal(res.code, 1);
    assert.equal(res.stderr, `drover: etcd at http://127.0.0.1:${port} is not reachable; start it with \`drover up\` or pass --etcd.\n`);
  });

  it('gives up on a silent endpoint after its short call deadline, not 30 s', async () => {
    // Accepts TCP connections and never answers: only the deadline ends the call.
    const sockets: Socket[] = [];
    const silent = createServer((s) => sockets.push(s.on('error', () => undefined)));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as AddressInfo;
    try {
      const started = Date.now();
      const res = await runDrover(['host', 'list', '--etcd', `127.0.0.1:${port}`]);
      const elapsed = Date.now() - started;
      assert.equal(res.code, 1);
      assert.match(res.stderr, /^drover: etcd at http:\/\/127\.0\.0\.1:\d+ is not reachable/);
      // 3 attempts x 2 s deadline, plus process start-up on a loaded machine.
      assert.ok(elapsed < 15_000, `took ${elapsed} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('--help describes the commands, with examples', async () => {
    const root = await runDrover(['--help']);
    assert.equal(root.code, 0);
    for (const word of ['vm', 'host', 'scan', 'check-heartbeat', 'check-host', 'check-vm', 'Exit codes', 'DROVER_ETCD']) assert.ok(root.stdout.includes(word), word);
    const vm = await runDrover(['vm', '--help']);
    for (const word of ['create', 'list', 'get', 'start', 'stop', 'restart', 'delete', 'log', 'events']) assert.match(vm.stdout, new RegExp(`^ {2}${word} `, 'm'));
    const stop = await runDrover(['vm', 'stop', '--help']);
    assert.equal(stop.code, 0);
    for (const word of ['--force', '--wait', '--etcd', '--prefix', '--json', 'Examples:']) assert.ok(stop.stdout.includes(word), word);
    const hosts = await runDrover(['host', 'list', '--help']);
    assert.ok(hosts.stdout.includes('ALIVE'));
  });

  it('prints the version', async () => {
    const res = await runDrover(['--version']);
    assert.equal(res.code, 0);
    assert.match(res.stdout, /^\d+\.\d+\.\d+\n$/);
  });
});
