/**
 * `drover vm console VM` (docs/consoles.md): the VM's serial console in
 * this terminal, read and write, the last screenful first. With etcd
 * access it opens the VM's serial socket directly (run it on the VM's
 * host); with `--api` it asks the API for a ticket and goes through its
 * websocket relay. Ctrl-] detaches (telnet's key), leaving the VM running;
 * so does the end of a piped stdin.
 */
import type { Duplex } from 'node:stream';
import { createWebSocketStream, WebSocket } from 'ws';
import { DroverError } from '../../lib/errors.js';
import { apiRequest, apiUrl, type ApiTarget } from '../api-client.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { withStore } from '../store-session.js';
import { connectSocket, consoleSocket, serialTail } from '../../vm-ops/console-socket.js';
import { resolveVm } from '../../vm-ops/resolve-vm.js';
import { vmLabel } from '../../vm-ops/vm-view.js';

/** Ctrl-]: detaches. */
export const DETACH_BYTE = 0x1d;

async function openLocal(ctx: CliContext, flags: GlobalFlags, ref: string): Promise<{ label: string; stream: Duplex }> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const vm = await withStore(opts, (s) => resolveVm(s.vms, ref));
  const target = await consoleSocket(vm, 'serial');
  const stream = await connectSocket(target.socket);
  if (target.serialLog !== undefined) ctx.io.stdout.write(await serialTail(target.serialLog));
  return { label: vmLabel(vm), stream };
}

async function openThroughApi(api: ApiTarget, ref: string): Promise<{ label: string; stream: Duplex }> {
  const { data } = await apiRequest<{ ticket: string; path: string }>(api, 'POST', `/api/v1/vms/${encodeURIComponent(ref)}/serial`);
  const url = apiUrl(api, `${data.path}?ticket=${encodeURIComponent(data.ticket)}`);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url, { followRedirects: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new DroverError('CONFLICT', `The API refused the console (HTTP ${res.statusCode}).`)));
    ws.once('error', (err) => reject(new DroverError('ETCD_UNAVAILABLE', `The API's console at ${api.url} cannot be reached (${err.message}).`, true)));
  });
  return { label: ref, stream: createWebSocketStream(ws) };
}

export async function consoleAction(ctx: CliContext, ref: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const { label, stream } = opts.api ? await openThroughApi(opts.api, ref) : await openLocal(ctx, flags, ref);
  ctx.io.stderr.write(`[connected to the serial console of VM ${label}; Ctrl-] detaches]\r\n`);
  const stdin = ctx.io.stdin() as NodeJS.ReadStream;
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  await new Promise<void>((resolve) => {
    let done = false;
    const finish = (why: string): void => {
      if (done) return;
      done = true;
      stdin.off('data', onInput);
      if (raw) stdin.setRawMode(false);
      stdin.destroy(); // nothing reads it after this; a paused pipe would keep the process alive
      stream.destroy();
      ctx.io.stderr.write(`\r\n[${why}]\n`);
      resolve();
    };
    const onInput = (chunk: Buffer): void => {
      const at = chunk.indexOf(DETACH_BYTE);
      if (at >= 0) {
        if (at > 0) stream.write(chunk.subarray(0, at));
        finish('detached; the VM keeps running');
        return;
      }
      stream.write(chunk);
    };
    stdin.on('data', onInput);
    stdin.once('end', () => finish('detached (end of input); the VM keeps running'));
    stream.on('data', (b: Buffer) => ctx.io.stdout.write(b));
    stream.once('close', () => finish('the console closed'));
    stream.once('error', () => finish('the console closed'));
  });
}
