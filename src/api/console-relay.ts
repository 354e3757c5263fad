/**
 * The console relay (docs/consoles.md): a websocket joined to a VM's VNC
 * or serial unix socket on this machine (found and checked by
 * src/vm-ops/console-socket.ts). The bytes flow through stream.pipeline
 * both ways, so a slow browser slows the VM's socket instead of filling
 * memory, and either side closing closes the other.
 */
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { createWebSocketStream, type WebSocket } from 'ws';
import { connectSocket } from '../vm-ops/console-socket.js';
import type { Logger } from '../lib/logger.js';

/**
 * Joins `ws` to the socket until either side closes; `greeting` (the serial
 * log's tail) goes first. Call it as soon as the websocket opens: what the
 * client sends meanwhile is held by the stream made here, not lost.
 */
export async function relay(ws: WebSocket, target: { socket: string; greeting?: () => Promise<Buffer> }, logger: Logger): Promise<void> {
  const stream = createWebSocketStream(ws);
  stream.pause();
  let sock: Socket;
  try {
    const greeting = target.greeting ? await target.greeting() : undefined;
    sock = await connectSocket(target.socket);
    if (greeting && greeting.length > 0) ws.send(greeting);
  } catch (err) {
    stream.destroy();
    ws.close(1011, err instanceof Error ? err.message.slice(0, 120) : 'console unavailable');
    return;
  }
  const quiet = (err: unknown): void => {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code !== 'ERR_STREAM_PREMATURE_CLOSE' && code !== 'ECONNRESET' && code !== 'EPIPE') logger.debug({ err: String(err) }, 'console relay ended');
  };
  // Either direction ending ends the session: qemu keeps its side open after the browser leaves, and takes one client at a time.
  await Promise.race([pipeline(sock, stream).catch(quiet), pipeline(stream, sock).catch(quiet)]);
  sock.destroy();
  stream.destroy();
  ws.terminate();
}
