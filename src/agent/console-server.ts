/**
 * The agent's console endpoint (docs/consoles.md, "Across hosts"): how an
 * API process on another machine reaches the VNC and serial sockets of the
 * VMs on this host, which never listen on the network themselves.
 *
 * TLS on `console_listen` with a self-signed certificate made once in the
 * state dir (openssl, argv only); its sha256 fingerprint is published in the
 * host record (`console`), which the API pins: etcd, which both trust, says
 * which certificate is this agent's, so no CA is needed. The API presents a
 * console ticket (src/auth/console-tickets.ts) on the first line,
 * `<kind> <vm-uuid> <ticket>\n`; the ticket is redeemed here, once, for that
 * VM and kind, and only for a VM designated to this host. Then `OK\n` and
 * the bytes flow (with backpressure) until either side closes; otherwise
 * `ERR <sentence>\n` and the connection ends. Nothing is read before the
 * ticket is checked but that one line (at most 256 bytes, within 5 s).
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { redeemTicket } from '../auth/console-tickets.js';
import { CONSOLE_KINDS, type ConsoleKind } from '../contract/auth-records.js';
import type { ConsoleEndpoint } from '../contract/host-record.js';
import { UUID_RE } from '../contract/vm-record.js';
import { DroverError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { AuthRepository } from '../store/auth-repository.js';
import type { VmRepository } from '../store/vm-repository.js';
import { connectSocket, consoleSocket } from '../vm-ops/console-socket.js';
import { isDesignatedTo } from './plan-vm.js';

const LINE_MAX = 256;
const LINE_TIMEOUT_MS = 5000;

export interface ConsoleServerDeps {
  host: string;
  stateDir: string;
  auth: AuthRepository;
  vms: VmRepository;
  logger: Logger;
}

export interface ConsoleServer {
  readonly endpoint: ConsoleEndpoint;
  close(): Promise<void>;
}

/** The certificate and key in `<state>/console-tls/`, made on first use. */
async function certificate(dir: string, host: string): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const read = async () => ({ cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') });
  try {
    return await read();
  } catch {
    const argv = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '3650', '-subj', `/CN=drover-console-${host}`];
    await new Promise<void>((resolve, reject) =>
      execFile('openssl', argv, { timeout: 30_000 }, (err, _o, stderr) => (err ? reject(new DroverError('SPAWN_FAILED', `openssl could not make the console certificate: ${(stderr || err.message).trim().split('\n')[0]}.`)) : resolve())),
    );
    return read();
  }
}

/** Reads the first line (the request) without consuming more than it. */
function firstLine(sock: TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error('no request within 5 s')), LINE_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.off('readable', onReadable);
      reject(err);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = sock.read(1) as Buffer | null) !== null) {
        if (chunk[0] === 0x0a) {
          clearTimeout(timer);
          sock.off('readable', onReadable);
          return resolve(buf.toString('utf8'));
        }
        buf = Buffer.concat([buf, chunk]);
        if (buf.length > LINE_MAX) return fail(new Error('the request line is too long'));
      }
    };
    sock.on('readable', onReadable);
    sock.once('error', fail);
  });
}

export async function startConsoleServer(listen: { host: string; port: number }, deps: ConsoleServerDeps): Promise<ConsoleServer> {
  const { cert, key } = await certificate(join(deps.stateDir, 'console-tls'), deps.host);
  const sha256 = new X509Certificate(cert).fingerprint256;
  const serve = async (sock: TLSSocket): Promise<void> => {
    sock.on('error', () => undefined);
    let vm = '';
    try {
      const [kind, uuid, ticket, ...rest] = (await firstLine(sock)).split(' ');
      if (rest.length > 0 || !CONSOLE_KINDS.includes(kind as ConsoleKind) || !UUID_RE.test(uuid ?? '') || ticket === undefined) throw new DroverError('USAGE', 'The request must be "<vnc|serial> <vm-uuid> <ticket>".');
      vm = uuid as string;
      const user = await redeemTicket(deps.auth, ticket, { vm, kind: kind as ConsoleKind, host: deps.host }, new Date());
      if (user === null) throw new DroverError('UNAUTHORIZED', 'The console ticket is not valid.');
      const record = await deps.vms.get(vm);
      if (!record || !isDesignatedTo(record, deps.host)) throw new DroverError('NOT_FOUND', `VM ${vm} does not run on ${deps.host}.`);
      const target = await consoleSocket(record, kind as ConsoleKind);
      const local = await connectSocket(target.socket);
      local.on('error', () => undefined);
      sock.write('OK\n');
      deps.logger.info({ vm, kind, user }, 'console opened through the agent');
      sock.pipe(local);
      local.pipe(sock);
      const end = (): void => {
        local.destroy();
        sock.destroy();
      };
      local.once('close', end);
      sock.once('close', end);
    } catch (err) {
      const sentence = errorMessage(err).replace(/\n/g, ' ');
      deps.logger.warn({ vm, err: sentence }, 'console request refused');
      sock.end(`ERR ${sentence}\n`);
    }
  };
  const server: Server = createServer({ cert, key, minVersion: 'TLSv1.3' }, (sock) => void serve(sock));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: { address: listen.host, port, sha256 },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The server `console_listen` asks for ("off": none; "auto": the host's address, any free port); null when off or it could not start (logged: the agent runs on). */
export async function startConfiguredConsoleServer(listen: string, hostIp: string, deps: ConsoleServerDeps): Promise<ConsoleServer | null> {
  if (listen === 'off') return null;
  const m = listen === 'auto' ? ['', hostIp, '0'] : /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(listen);
  if (!m) {
    deps.logger.error({ console_listen: listen }, 'console_listen must be HOST:PORT, "auto" or "off"; consoles are not served to other hosts');
    return null;
  }
  try {
    const server = await startConsoleServer({ host: m[1] as string, port: Number(m[2]) }, deps);
    deps.logger.info({ console: server.endpoint }, `consoles served to API processes on ${server.endpoint.address}:${server.endpoint.port} (TLS)`);
    return server;
  } catch (err) {
    deps.logger.error({ err: errorMessage(err) }, 'the console endpoint is off; the agent runs on without it');
    return null;
  }
}
