/**
 * The VM consoles (docs/consoles.md): real etcd, a real agent, real qemu
 * (TCG), the API in this process, the `ws` client as a browser would use it.
 * A user's ticket opens its VM's VNC socket (the first bytes are qemu's RFB
 * banner) and its serial console (the guest's shell answers); every refusal
 * (reused, expired, forged, malformed and other VMs' tickets, a foreign
 * Origin, no VM.Console, another user's VM) gets an HTTP refusal and no
 * byte of the stream. `drover vm console` works through etcd on the host
 * and through --api, and Ctrl-] detaches.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import WebSocket from 'ws';
import { addUser, createToken } from '../../src/auth/accounts.js';
import { issueTicket } from '../../src/auth/console-tickets.js';
import type { Role } from '../../src/contract/auth-records.js';
import { startApi, type RunningApi } from '../../src/api/run-api.js';
import { AuthRepository } from '../../src/store/auth-repository.js';
import { apiEtcd, startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { DROVER_BIN, GUEST_DIR, startCluster, waitForSerialText, type Cluster } from '../helpers/agent-harness.js';
import { quietLogger } from '../api/helpers.js';
import { connect as tlsConnect } from 'node:tls';
import { openConsole } from '../../src/api/console-channel.js';
import type { ApiDeps } from '../../src/api/context.js';
import type { ConsoleEndpoint } from '../../src/contract/host-record.js';

interface Opened {
  status: number | null;
  /** Every byte received. */
  bytes: () => Buffer;
  ws: WebSocket | null;
}

/** Connects like a browser; resolves once open (status 101) or refused (the HTTP status), collecting what arrives. */
function connect(url: string, headers: Record<string, string> = {}): Promise<Opened> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const ws = new WebSocket(url, ['binary'], { headers });
    ws.on('message', (data: Buffer) => chunks.push(Buffer.from(data)));
    ws.once('open', () => resolve({ status: 101, bytes: () => Buffer.concat(chunks), ws }));
    ws.once('unexpected-response', (_req, res) => {
      res.on('data', () => undefined);
      resolve({ status: res.statusCode ?? null, bytes: () => Buffer.concat(chunks), ws: null });
    });
    ws.once('error', () => resolve({ status: null, bytes: () => Buffer.concat(chunks), ws: null }));
  });
}

async function until(test: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('VM consoles: tickets, the websocket relay and drover vm console (real agent, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let api: RunningApi;
  let auth: AuthRepository;
  const tokens: Record<string, string> = {};
  let aliceVm: string;
  let bobVm: string;

  const post = async (who: string, path: string, origin?: string) => {
    const res = await fetch(`${api.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${tokens[who]}`, ...(origin ? { origin } : {}) } });
    return { status: res.status, body: (await res.json()) as { ticket: string; path: string; error?: string } };
  };
  const wsUrl = (path: string, ticket: string) => `${api.url.replace(/^http/, 'ws')}${path}?ticket=${encodeURIComponent(ticket)}`;

  before(async () => {
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    await cluster.startAgent('hv1');
    api = await startApi({ ...(await apiEtcd(etcd, cluster.prefix)), prefix: cluster.prefix, listen: '127.0.0.1:0', bootDirs: [GUEST_DIR], logger: quietLogger });
    auth = new AuthRepository(cluster.kv, cluster.keys);
    const people: Array<[string, Role]> = [['alice', 'user'], ['bob', 'user'], ['audrey', 'auditor']];
    for (const [name, role] of people) {
      await addUser(auth, { name, role, now: new Date() });
      tokens[name] = (await createToken(auth, { user: name, now: new Date() })).token;
    }
    aliceVm = await cluster.createVm({ name: 'con-a', owner: 'alice' });
    bobVm = await cluster.createVm({ name: 'con-b', owner: 'bob' });
    const rec = await cluster.waitForStatus(aliceVm, 'RUNNING', 90_000);
    await cluster.waitForStatus(bobVm, 'RUNNING', 90_000);
    await waitForSerialText((rec.runtime as { serial_log: string }).serial_log, 'DROVER-GUEST-READY', 60_000);
  });
  after(async () => {
    await api?.stop();
    await cluster?.close();
    await etcd?.close();
  });

  it('a ticket opens the VNC console once: the first bytes are the RFB banner', async () => {
    const t = await post('alice', '/api/v1/vms/con-a/console');
    assert.equal(t.status, 201, JSON.stringify(t.body));
    assert.match(t.body.ticket, /^drc_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.equal(t.body.path, `/api/v1/vms/${aliceVm}/console`);
    const c = await connect(wsUrl(t.body.path, t.body.ticket), { origin: api.url });
    assert.equal(c.status, 101);
    await until(() => c.bytes().length >= 12, 10_000, 'the RFB banner');
    assert.equal(c.bytes().subarray(0, 12).toString('latin1'), 'RFB 003.008\n');
    c.ws?.close();

    const again = await connect(wsUrl(t.body.path, t.body.ticket));
    assert.equal(again.status, 401, 'a used ticket opens nothing');
    assert.equal(again.bytes().length, 0);
  });

  it('refuses expired, forged, malformed and other VMs\' tickets, a foreign Origin, a user without VM.Console, another user\'s VM: no byte sent', async () => {
    const path = `/api/v1/vms/${aliceVm}/console`;
    const expired = await issueTicket(auth, { user: 'alice', vm: aliceVm, kind: 'vnc' }, new Date(Date.now() - 31_000));
    const forBob = (await post('bob', '/api/v1/vms/con-b/console')).body.ticket;
    const serialTicket = (await post('alice', '/api/v1/vms/con-a/serial')).body.ticket;
    const cases: Array<[string, string, number, Record<string, string>?]> = [
      ['expired', expired, 401],
      ['forged', `drc_${'0'.repeat(16)}_${'A'.repeat(43)}`, 401],
      ['malformed', 'x', 401],
      ['another VM\'s (bob\'s)', forBob, 401],
      ['another console\'s (serial)', serialTicket, 401],
    ];
    for (const [what, ticket, status] of cases) {
      const c = await connect(wsUrl(path, ticket));
      assert.equal(c.status, status, what);
      assert.equal(c.bytes().length, 0, what);
    }
    const good = (await post('alice', '/api/v1/vms/con-a/console')).body.ticket;
    const foreign = await connect(wsUrl(path, good), { origin: 'https://evil.example' });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.bytes().length, 0);

    assert.equal((await post('audrey', '/api/v1/vms/con-a/console')).status, 403, 'an auditor has no VM.Console');
    assert.equal((await post('bob', '/api/v1/vms/con-a/console')).status, 404, "another user's VM is not there");
    const noTicket = await connect(`${api.url.replace(/^http/, 'ws')}${path}`);
    assert.equal(noTicket.status, 400);
  });

  it('the serial console shows the last output, and the guest\'s shell answers what is typed', async () => {
    const t = await post('alice', '/api/v1/vms/con-a/serial');
    assert.equal(t.status, 201);
    const c = await connect(wsUrl(t.body.path, t.body.ticket), { origin: api.url });
    assert.equal(c.status, 101);
    await until(() => /DROVER-(GUEST-READY|TICK)/.test(c.bytes().toString()), 10_000, 'the serial log tail');
    c.ws?.send(Buffer.from('echo drover-$((6*7))\n'));
    await until(() => c.bytes().toString().includes('drover-42'), 20_000, "the guest's answer");
    c.ws?.close();
  });

  it('drover vm console: through etcd on the host and through --api; Ctrl-] detaches', async () => {
    for (const how of ['etcd', 'api'] as const) {
      const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DROVER_'))), ...etcd.env, ...(how === 'api' ? { DROVER_API_URL: api.url, DROVER_TOKEN: tokens.alice as string } : {}) };
      const args = ['vm', 'console', 'con-a', ...(how === 'etcd' ? ['--etcd', etcd.endpoint, '--prefix', cluster.prefix] : [])];
      const child = spawn(DROVER_BIN, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      await until(() => err.includes('Ctrl-] detaches'), 20_000, `${how}: the console to connect (${err})`);
      child.stdin.write(`echo ${how}-$((40+2))\n`);
      await until(() => out.includes(`${how}-42`), 20_000, `${how}: the guest's answer`);
      child.stdin.write(Buffer.from([0x1d]));
      assert.equal(await exited, 0, err);
      assert.match(err, /detached; the VM keeps running/);
    }
    assert.equal((await cluster.getVm(aliceVm))?.status, 'RUNNING');
  });

  it("through the agent's console endpoint (TLS, its certificate pinned by the host record): the RFB banner and the serial shell", async () => {
    const viaAgent = await startApi({ ...(await apiEtcd(etcd, cluster.prefix)), prefix: cluster.prefix, listen: '127.0.0.1:0', bootDirs: [GUEST_DIR], logger: quietLogger, settings: { consoleVia: 'agent' } });
    try {
      const postVia = async (path: string) => {
        const res = await fetch(`${viaAgent.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${tokens.alice}` } });
        return (await res.json()) as { ticket: string; path: string };
      };
      const t = await postVia('/api/v1/vms/con-a/console');
      const c = await connect(`${viaAgent.url.replace(/^http/, 'ws')}${t.path}?ticket=${encodeURIComponent(t.ticket)}`);
      assert.equal(c.status, 101);
      await until(() => c.bytes().length >= 12, 10_000, 'the RFB banner through the agent');
      assert.equal(c.bytes().subarray(0, 12).toString('latin1'), 'RFB 003.008\n');
      c.ws?.close();
      const s = await postVia('/api/v1/vms/con-a/serial');
      const sc = await connect(`${viaAgent.url.replace(/^http/, 'ws')}${s.path}?ticket=${encodeURIComponent(s.ticket)}`);
      assert.equal(sc.status, 101);
      sc.ws?.send(Buffer.from('echo agent-$((6*7))\n'));
      await until(() => sc.bytes().toString().includes('agent-42'), 20_000, 'the guest answering through the agent');
      sc.ws?.close();
    } finally {
      await viaAgent.stop();
    }
  });

  it('the agent endpoint refuses a forged or reused ticket and a VM not on its host; the API refuses a certificate other than the pinned one', async () => {
    const host = JSON.parse((await cluster.kv.get(cluster.keys.host('hv1')))?.raw ?? '{}') as { console?: ConsoleEndpoint };
    const endpoint = host.console!;
    assert.match(endpoint.sha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const ask = (line: string) =>
      new Promise<string>((resolve, reject) => {
        const sock = tlsConnect({ host: endpoint.address, port: endpoint.port, rejectUnauthorized: false });
        let got = '';
        sock.on('data', (b: Buffer) => (got += b.toString('latin1')));
        sock.on('close', () => resolve(got));
        sock.on('error', reject);
        sock.once('secureConnect', () => sock.write(line));
        setTimeout(() => sock.end(), 3000);
      });
    assert.match(await ask(`vnc ${aliceVm} drc_${'0'.repeat(16)}_${'A'.repeat(43)}\n`), /^ERR The console ticket is not valid\.\n$/);
    // A browser's ticket (P/auth/ticket/) is nothing to an agent: its etcd role cannot even read there.
    const browsers = await issueTicket(auth, { user: 'alice', vm: aliceVm, kind: 'vnc' }, new Date());
    assert.match(await ask(`vnc ${aliceVm} ${browsers}\n`), /^ERR /);
    const ticket = await issueTicket(auth, { user: 'alice', vm: aliceVm, kind: 'vnc' }, new Date(), 'hv1');
    assert.match(await ask(`vnc ${aliceVm} ${ticket}\n`), /^OK\nRFB 003\.008\n/);
    assert.match(await ask(`vnc ${aliceVm} ${ticket}\n`), /^ERR /, 'a ticket works once');
    assert.match(await ask('garbage\n'), /^ERR The request must be/);
    const elsewhere = await cluster.createVm({ name: 'con-elsewhere', owner: 'alice', status: 'STOP' }, 'hv2');
    const forHv2 = await issueTicket(auth, { user: 'alice', vm: elsewhere, kind: 'vnc' }, new Date(), 'hv1');
    assert.match(await ask(`vnc ${elsewhere} ${forHv2}\n`), new RegExp(`^ERR VM ${elsewhere} does not run on hv1\\.\\n$`));
    const deps = { store: { auth, hosts: null }, settings: {}, now: () => new Date() } as unknown as ApiDeps;
    await assert.rejects(openConsole(deps, { kind: 'agent', host: 'hv1', endpoint: { ...endpoint, sha256: endpoint.sha256.replace(/^../, endpoint.sha256.startsWith('00') ? '11' : '00') } }, aliceVm, 'vnc', 'alice'), /presented a certificate other than the one its host record names/);
  });
});
