/**
 * Where a VM's consoles are on this machine (docs/consoles.md): its VNC and
 * serial unix sockets, from the record's `runtime` (written by the VM's
 * agent). A path is trusted only when it is absolute, named for this VM
 * (`.../<uuid>/vnc.sock`, `.../<uuid>/serial.sock`) and a socket, so no
 * record can point the API's relay or `drover vm console` at another file.
 */
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { basename, dirname, isAbsolute } from 'node:path';
import type { ConsoleKind } from '../contract/auth-records.js';
import { DroverError } from '../lib/errors.js';
import { rawObject, type StoredVm } from '../store/vm-repository.js';

/** What the serial console shows on connect: the end of the serial log. */
const SERIAL_TAIL_BYTES = 4096;

export interface ConsoleTarget {
  socket: string;
  serialLog?: string;
  /** Whether the socket is on this machine. */
  here: boolean;
  /** The VM's host and name, for sentences. */
  host: string;
  name: string;
}

/** The socket of the VM's console on this machine, checked; a sentence for the caller otherwise. */
export async function consoleSocket(vm: StoredVm, kind: ConsoleKind): Promise<ConsoleTarget> {
  const target = await findConsole(vm, kind);
  if (!target.here) {
    throw new DroverError('CONFLICT', `The console of VM ${target.name} is on ${target.host}, whose sockets this machine cannot reach; open it on ${target.host} (with drover vm console there, or through the API; docs/consoles.md).`);
  }
  return target;
}

/** Where the VM's console socket is (on this machine or not), checked; a sentence when there is none to reach. */
export async function findConsole(vm: StoredVm, kind: ConsoleKind): Promise<ConsoleTarget> {
  const obj = rawObject(vm.raw) ?? {};
  const name = typeof obj.name === 'string' ? obj.name : vm.uuid;
  const runtime = (typeof obj.runtime === 'object' && obj.runtime !== null ? obj.runtime : {}) as Record<string, unknown>;
  if (obj.status !== 'RUNNING') throw new DroverError('CONFLICT', `VM ${name} is ${typeof obj.status === 'string' ? obj.status : 'without a status'}; its console is there only while it runs.`);
  const path = kind === 'vnc' ? runtime.vnc : runtime.serial_socket;
  const file = kind === 'vnc' ? 'vnc.sock' : 'serial.sock';
  if (typeof path !== 'string') {
    const why = kind === 'vnc' ? 'it has no VNC socket (spec.vnc is "tcp" or "none")' : 'it was started by an agent without serial sockets; restart it';
    throw new DroverError('CONFLICT', `VM ${name} has no ${kind === 'vnc' ? 'VNC' : 'serial'} console here: ${why}.`);
  }
  if (!isAbsolute(path) || path.split('/').includes('..') || basename(path) !== file || basename(dirname(path)) !== vm.uuid) {
    throw new DroverError('CONFLICT', `VM ${name}'s record names a console socket that is not its own, so the API will not open it.`);
  }
  const here = (await stat(path).catch(() => null))?.isSocket() === true;
  const host = typeof obj.host === 'string' ? obj.host : 'its host';
  const serialLog = typeof runtime.serial_log === 'string' && basename(dirname(runtime.serial_log)) === vm.uuid ? runtime.serial_log : undefined;
  return { socket: path, here, host, name, ...(kind === 'serial' && serialLog !== undefined ? { serialLog } : {}) };
}

/** The last bytes of the serial log, starting at a line break (the last screenful, near enough). */
export async function serialTail(path: string): Promise<Buffer> {
  try {
    // The run dir is qemu's (docs/security.md): never follow a symlink it could leave in place of its log.
    const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(0, size - SERIAL_TAIL_BYTES);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      const nl = start > 0 ? buf.indexOf(0x0a) : -1;
      return nl >= 0 ? buf.subarray(nl + 1) : buf;
    } finally {
      await fh.close();
    }
  } catch {
    return Buffer.alloc(0);
  }
}

/** Connects to the unix socket; rejects with a sentence when nothing listens. */
export function connectSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', (err) => reject(new DroverError('CONFLICT', `The console socket did not answer (${err.message}).`)));
  });
}
