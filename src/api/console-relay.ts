/**
 * The console relay (docs/consoles.md): a websocket joined to a VM's VNC
 * or serial unix socket on this machine (found and checked by
 * src/vm-ops/console-socket.ts). Each chunk the socket yields goes out as
 * one binary frame, each frame the client sends is written to the socket.
 * Both directions are bounded: the socket is paused while more than
 * MAX_PENDING frames wait to reach the client, the websocket while the
 * socket's buffer is full, so a slow browser slows the VM's socket instead
 * of filling memory. Either side closing closes the other.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { Logger } from '../lib/logger.js';

/** Frames sent to the client and not yet written to its connection, at most (of up to 64 KiB each). */
const MAX_PENDING = 16;

/**
 * Joins `ws` to the socket until either side closes; `greeting` (the serial
 * log's tail) goes first. Call it as soon as the websocket opens: what the
 * client sends meanwhile is held (the websocket is paused), not lost.
 */
export async function relay(ws: WebSocket, open: () => Promise<{ stream: Duplex; greeting?: Buffer }>, logger: Logger): Promise<void> {
  ws.pause();
  let closed = false;
  ws.once('close', () => (closed = true));
  ws.on('error', () => undefined);
  let sock: Duplex;
  try {
    const opened = await open();
    sock = opened.stream;
    if (opened.greeting && opened.greeting.length > 0) ws.send(opened.greeting, { binary: true });
  } catch (err) {
    ws.close(1011, err instanceof Error ? err.message.slice(0, 120) : 'console unavailable');
    return;
  }
  if (closed) return void sock.destroy();
  await new Promise<void>((resolve) => {
    const end = (why?: unknown): void => {
      if (why !== undefined) logger.debug({ err: String(why) }, 'console relay ended');
      sock.destroy();
      ws.terminate();
      resolve();
    };
    let pending = 0;
    sock.on('data', (chunk: Buffer) => {
      pending++;
      ws.send(chunk, { binary: true, compress: false }, (err) => {
        pending--;
        if (err) return end(err);
        if (pending < MAX_PENDING / 2 && sock.isPaused()) sock.resume();
      });
      if (pending >= MAX_PENDING) sock.pause();
    });
    ws.on('message', (data: Buffer) => {
      if (!sock.write(data)) {
        ws.pause();
        sock.once('drain', () => ws.resume());
      }
    });
    sock.once('close', () => end());
    sock.once('error', end);
    ws.once('close', () => end());
    ws.once('error', end);
    ws.resume();
    sock.resume(); // a stream handed over paused (the agent channel reads its reply first) flows now
  });
}
