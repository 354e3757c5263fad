/**
 * Where the API opens a VM's console (docs/consoles.md): its unix socket
 * when it is on this machine, otherwise the console endpoint its host's
 * agent publishes in the host record: TLS 1.3 to that address, the
 * certificate pinned to the record's sha256 fingerprint before anything is
 * sent, then a fresh single-use ticket for the same user, VM and console
 * on the first line, and the agent's `OK` before any byte of the console.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { issueTicket } from '../auth/console-tickets.js';
import type { ConsoleKind } from '../contract/auth-records.js';
import { consoleEndpointSchema, type ConsoleEndpoint } from '../contract/host-record.js';
import { DroverError } from '../lib/errors.js';
import type { StoredVm } from '../store/vm-repository.js';
import { connectSocket, findConsole, serialTail } from '../vm-ops/console-socket.js';
import type { ApiDeps } from './context.js';

export type ConsoleRoute = { kind: 'local'; socket: string; serialLog?: string } | { kind: 'agent'; host: string; endpoint: ConsoleEndpoint };

/** Decides how to reach the console; a sentence when neither way exists. */
export async function consoleRoute(deps: ApiDeps, vm: StoredVm, kind: ConsoleKind): Promise<ConsoleRoute> {
  const target = await findConsole(vm, kind);
  if (target.here && deps.settings.consoleVia !== 'agent') return { kind: 'local', socket: target.socket, ...(target.serialLog !== undefined ? { serialLog: target.serialLog } : {}) };
  const record = (await deps.store.hosts.list()).find((h) => h.name === target.host);
  const endpoint = consoleEndpointSchema.safeParse(record?.record?.console);
  if (!endpoint.success || record?.status !== 'ALIVE') {
    throw new DroverError('CONFLICT', `The console of VM ${target.name} is on ${target.host}, which serves no console endpoint now (its agent is down, or console_listen is off; docs/consoles.md).`);
  }
  return { kind: 'agent', host: target.host, endpoint: endpoint.data };
}

const REPLY_MAX = 512;

/** Opens the route: a connected stream carrying only the console's bytes, and what to show first. */
export async function openConsole(deps: ApiDeps, route: ConsoleRoute, vm: string, kind: ConsoleKind, user: string): Promise<{ stream: Duplex; greeting?: Buffer }> {
  if (route.kind === 'local') {
    const greeting = route.serialLog !== undefined ? await serialTail(route.serialLog) : undefined;
    return { stream: await connectSocket(route.socket), ...(greeting ? { greeting } : {}) };
  }
  const ticket = await issueTicket(deps.store.auth, { user, vm, kind }, deps.now(), route.host);
  const { address, port, sha256 } = route.endpoint;
  const sock: TLSSocket = await new Promise((resolve, reject) => {
    // The certificate is checked against the fingerprint etcd holds, not a CA.
    const s = tlsConnect({ host: address, port, minVersion: 'TLSv1.3', rejectUnauthorized: false, checkServerIdentity: () => undefined });
    s.once('secureConnect', () => {
      if (s.getPeerCertificate().fingerprint256 !== sha256) {
        s.destroy();
        return reject(new DroverError('CONFLICT', `The console endpoint of ${route.host} presented a certificate other than the one its host record names; refusing it.`));
      }
      resolve(s);
    });
    s.once('error', (err) => reject(new DroverError('CONFLICT', `The console endpoint of ${route.host} (${address}:${port}) cannot be reached (${err.message}).`)));
  });
  sock.write(`${kind} ${vm} ${ticket}\n`);
  const reply = await new Promise<Buffer>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const nl = buf.indexOf(0x0a);
      if (nl < 0 && buf.length < REPLY_MAX) return;
      sock.off('data', onData);
      sock.pause();
      if (nl < 0) return reject(new DroverError('CONFLICT', `The console endpoint of ${route.host} answered something else than a reply line.`));
      // Bytes after the reply are the console's: put them back.
      if (nl + 1 < buf.length) sock.unshift(buf.subarray(nl + 1));
      resolve(buf.subarray(0, nl));
    };
    sock.on('data', onData);
    sock.once('close', () => reject(new DroverError('CONFLICT', `The console endpoint of ${route.host} closed the connection.`)));
  });
  const line = reply.toString('utf8');
  if (line !== 'OK') {
    sock.destroy();
    throw new DroverError('CONFLICT', `The agent on ${route.host} refused the console: ${line.replace(/^ERR /, '')}`);
  }
  return { stream: sock };
}
