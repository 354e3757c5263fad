/**
 * QmpClient against a small in-test server that speaks QMP the way qemu does
 * (greeting, capabilities negotiation, id-tagged replies, interleaved events),
 * and misbehaves on purpose: torn frames, several messages per chunk, errors,
 * silence, a dropped connection.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DroverError } from '../../src/lib/errors.js';
import { QmpClient, QmpCommandError } from '../../src/hypervisor/qemu/qmp-client.js';
import type { QmpEvent } from '../../src/hypervisor/qemu/qmp-types.js';

const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'Debian' }, capabilities: ['oob'] } };
const TS = { seconds: 1, microseconds: 2 };

interface Request {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: string;
}

type Handler = (req: Request, conn: Socket) => void;

/** A fake qemu monitor. `handle` answers every command after qmp_capabilities. */
class FakeQmpServer {
  private server: Server | null = null;
  readonly conns: Socket[] = [];
  readonly received: Request[] = [];
  greet = true;

  constructor(
    readonly path: string,
    private handle: Handler,
  ) {}

  setHandler(h: Handler): void {
    this.handle = h;
  }

  listen(): Promise<void> {
    return new Promise((resolve) => {
      this.server = createServer((conn) => {
        this.conns.push(conn);
        let buf = '';
        conn.setEncoding('utf8');
        conn.on('error', () => undefined);
        conn.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const req = JSON.parse(buf.slice(0, nl)) as Request;
            buf = buf.slice(nl + 1);
            this.received.push(req);
            if (req.execute === 'qmp_capabilities') send(conn, { return: {}, id: req.id });
            else this.handle(req, conn);
          }
        });
        if (this.greet) send(conn, GREETING);
      });
      this.server.listen(this.path, resolve);
    });
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

function send(conn: Socket, msg: unknown): void {
  conn.write(`${JSON.stringify(msg)}\r\n`);
}

describe('QmpClient', () => {
  let dir: string;
  let n = 0;
  const servers: FakeQmpServer[] = [];
  const clients: QmpClient[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-qmp-'));
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(servers.map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(handle: Handler, opts: { greet?: boolean; delayMs?: number } = {}): Promise<FakeQmpServer> {
    const server = new FakeQmpServer(join(dir, `qmp-${n++}.sock`), handle);
    server.greet = opts.greet ?? true;
    servers.push(server);
    if (opts.delayMs) setTimeout(() => void server.listen(), opts.delayMs);
    else await server.listen();
    return server;
  }

  async function connect(server: FakeQmpServer, timeoutMs = 2000): Promise<QmpClient> {
    const c = await QmpClient.connect(server.path, { timeoutMs });
    clients.push(c);
    return c;
  }

  it('waits for the socket to appear, negotiates capabilities, and returns typed results', async () => {
    const server = await serve(
      (req, conn) => {
        if (req.execute === 'query-status') send(conn, { return: { running: true, status: 'running' }, id: req.id });
      },
      { delayMs: 60 },
    );
    const began = Date.now();
    const client = await connect(server);
    assert.ok(Date.now() - began >= 50);
    assert.equal(client.greeting?.QMP.version.qemu.major, 7);
    assert.equal(server.received[0]?.execute, 'qmp_capabilities');
    const status = await client.execute('query-status');
    assert.equal(status.status, 'running');
    assert.equal(status.running, true);
  });

  it('sends arguments and matches replies by id, even out of order', async () => {
    const held: Request[] = [];
    const server = await serve((req, conn) => {
      held.push(req);
      if (held.length === 2) {
        // Answer the second first.
        send(conn, { return: `out:${String(held[1]?.arguments?.['command-line'])}`, id: held[1]?.id });
        send(conn, { return: `out:${String(held[0]?.arguments?.['command-line'])}`, id: held[0]?.id });
      }
    });
    const client = await connect(server);
    const [a, b] = await Promise.all([
      client.execute('human-monitor-command', { 'command-line': 'info a' }),
      client.execute('human-monitor-command', { 'command-line': 'info b' }),
    ]);
    assert.equal(a, 'out:info a');
    assert.equal(b, 'out:info b');
    assert.deepEqual(held[0]?.arguments, { 'command-line': 'info a' });
    assert.equal(server.received.find((r) => r.execute === 'query-status'), undefined);
  });

  it('reassembles torn frames and splits several messages in one chunk', async () => {
    const server = await serve((req, conn) => {
      const event = JSON.stringify({ event: 'STOP', data: {}, timestamp: TS });
      const reply = JSON.stringify({ return: 'héllo ✓', id: req.id });
      const wire = Buffer.from(`${event}\n${reply}\n`, 'utf8');
      // One byte at a time, so multi-byte characters are split too.
      let i = 0;
      const drip = (): void => {
        if (i >= wire.length) return;
        conn.write(wire.subarray(i, i + 1));
        i += 1;
        setImmediate(drip);
      };
      drip();
    });
    const client = await connect(server);
    const events: string[] = [];
    client.on('event', (ev) => events.push(ev.event));
    assert.equal(await client.execute('human-monitor-command', { 'command-line': 'x' }), 'héllo ✓');
    assert.deepEqual(events, ['STOP']);

    server.setHandler((req, conn) => {
      const many = [
        { event: 'RESUME', data: {}, timestamp: TS },
        { return: {}, id: req.id },
        { event: 'POWERDOWN', data: {}, timestamp: TS },
      ];
      conn.write(many.map((m) => JSON.stringify(m)).join('\n') + '\n');
    });
    await client.execute('cont');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, ['STOP', 'RESUME', 'POWERDOWN']);
  });

  it("turns an error reply into QMP_ERROR with qemu's desc, not retryable", async () => {
    const server = await serve((req, conn) =>
      send(conn, { error: { class: 'GenericError', desc: 'Guest has not initialized the display (yet)' }, id: req.id }),
    );
    const client = await connect(server);
    const err = await client.execute('system_powerdown').then(() => assert.fail('no error'), (e: unknown) => e);
    assert.ok(err instanceof QmpCommandError);
    assert.ok(err instanceof DroverError);
    assert.equal(err.code, 'QMP_ERROR');
    assert.equal(err.retryable, false);
    assert.equal(err.message, 'Guest has not initialized the display (yet)');
    assert.equal(err.qmpClass, 'GenericError');
    assert.equal(err.command, 'system_powerdown');
  });

  it('emits typed events, by union and by name, and untyped ones separately', async () => {
    const server = await serve(() => undefined);
    const client = await connect(server);
    const all: QmpEvent[] = [];
    const shutdowns: Array<{ guest: boolean; reason: string }> = [];
    const other: string[] = [];
    client.on('event', (ev) => all.push(ev));
    client.on('SHUTDOWN', (data) => shutdowns.push(data));
    client.on('other-event', (ev) => other.push(ev.event));
    const conn = server.conns[0];
    assert.ok(conn);
    send(conn, { event: 'SHUTDOWN', data: { guest: true, reason: 'guest-shutdown' }, timestamp: TS });
    send(conn, { event: 'NIC_RX_FILTER_CHANGED', data: { path: '/x' }, timestamp: TS });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(all.length, 1);
    const ev = all[0];
    assert.ok(ev?.event === 'SHUTDOWN');
    assert.equal(ev.data.guest, true); // narrowed by the discriminant
    assert.deepEqual(shutdowns, [{ guest: true, reason: 'guest-shutdown' }]);
    assert.deepEqual(other, ['NIC_RX_FILTER_CHANGED']);
  });

  it('rejects pending and later commands with QMP_CLOSED and emits close once when the peer goes away', async () => {
    const server = await serve(() => undefined); // never answers
    const client = await connect(server);
    let closes = 0;
    client.on('close', () => closes++);
    const pending = client.execute('query-status');
    await new Promise((r) => setTimeout(r, 20));
    server.conns[0]?.destroy();
    await assert.rejects(pending, (e: unknown) => e instanceof DroverError && e.code === 'QMP_CLOSED' && e.retryable);
    await assert.rejects(client.execute('query-status'), { code: 'QMP_CLOSED' });
    assert.equal(client.closed, true);
    await client.close();
    assert.equal(closes, 1);
  });

  it('times out a command that gets no answer', async () => {
    const server = await serve(() => undefined);
    const client = await QmpClient.connect(server.path, { timeoutMs: 2000, commandTimeoutMs: 50 });
    clients.push(client);
    await assert.rejects(client.execute('query-status'), (e: unknown) => e instanceof DroverError && e.code === 'TIMEOUT' && e.retryable);
  });

  it('gives up on a socket that never greets (another client holds the monitor)', async () => {
    const server = await serve(() => undefined, { greet: false });
    const began = Date.now();
    await assert.rejects(QmpClient.connect(server.path, { timeoutMs: 150 }), { code: 'TIMEOUT' });
    assert.ok(Date.now() - began < 1000);
  });

  it('stops retrying at once when the peer is known to be gone, or on abort', async () => {
    const missing = join(dir, 'never.sock');
    let checks = 0;
    await assert.rejects(
      QmpClient.connect(missing, { timeoutMs: 5000, isGone: () => ++checks > 3 }),
      (e: unknown) => e instanceof DroverError && e.code === 'QMP_CLOSED' && /exited before/.test(e.message),
    );
    assert.equal(checks, 4);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(QmpClient.connect(missing, { timeoutMs: 5000, signal: ac.signal }), /aborted/);
    await assert.rejects(QmpClient.connect(missing, { timeoutMs: 40 }), { code: 'TIMEOUT' });
  });
});
