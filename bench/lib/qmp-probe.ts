/**
 * The physical floor: qemu spawned directly (argv array, no shell), timed
 * from just before spawn() to the moment its QMP greeting line arrives.
 *
 * The socket is polled every millisecond (drover's own client polls every
 * 5 ms), and each line's arrival time is taken in the socket's 'data'
 * handler, so the figure is what qemu itself costs plus one event-loop turn.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

const RETRY_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

export interface ProbeResult {
  /** spawn() → greeting line, ms. */
  greetingMs: number;
  /** spawn() → the first query-status reply (only when asked for), ms. */
  answeredMs?: number;
  /** The status in that reply. */
  firstStatus?: string;
  /** spawn() → query-status answered "running" (only with untilRunning), ms. */
  runningMs?: number;
  pid: number;
}

interface Line {
  text: string;
  at: number;
}

/** Newline-delimited JSON lines off a socket, each stamped with its arrival time. */
class LineReader {
  private buf = '';
  private readonly queue: Line[] = [];
  private waiter: { resolve(l: Line): void; reject(e: Error): void } | null = null;
  private closed = false;

  constructor(socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      const at = performance.now();
      this.buf += chunk;
      let nl = this.buf.indexOf('\n');
      while (nl >= 0) {
        const text = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (text !== '') this.push({ text, at });
        nl = this.buf.indexOf('\n');
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.reject(new Error('QMP socket closed'));
      this.waiter = null;
    });
  }

  private push(line: Line): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(line);
    } else {
      this.queue.push(line);
    }
  }

  next(timeoutMs: number): Promise<Line> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new Error('QMP socket closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`no QMP line within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** The next line that is a command reply (events are skipped). */
  async reply(timeoutMs: number): Promise<Line & { json: Record<string, unknown> }> {
    for (;;) {
      const line = await this.next(timeoutMs);
      const json = JSON.parse(line.text) as Record<string, unknown>;
      if ('return' in json || 'error' in json) return { ...line, json };
    }
  }
}

function connectOnce(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const onError = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

async function connectPolling(path: string, child: ChildProcess, deadline: number): Promise<Socket> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
      throw new Error('qemu exited (or never started) before its QMP socket accepted a connection');
    }
    try {
      return await connectOnce(path);
    } catch (err) {
      if (!RETRY_CODES.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
    if (performance.now() > deadline) throw new Error(`QMP socket ${path} did not accept a connection in time`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/**
 * Spawns `binary argv`, waits for the QMP greeting on `qmpSocket` (and, with
 * `untilRunning`, negotiates and polls query-status until "running"), then
 * SIGKILLs qemu and waits for it to go. `track` sees the child at once, so a
 * caller can kill it on an error.
 */
export async function probeQemu(
  binary: string,
  argv: string[],
  qmpSocket: string,
  opts: { untilAnswer?: boolean; untilRunning?: boolean; timeoutMs?: number; track?: (child: ChildProcess) => void } = {},
): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  let stderr = '';
  const t0 = performance.now();
  const child = spawn(binary, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  opts.track?.(child);
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  let spawnError: Error | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      spawnError = err;
      resolve();
    });
  });
  let socket: Socket | null = null;
  try {
    socket = await connectPolling(qmpSocket, child, t0 + timeoutMs);
    const lines = new LineReader(socket);
    const greeting = await lines.next(timeoutMs);
    if (!greeting.text.includes('"QMP"')) throw new Error(`unexpected first QMP line: ${greeting.text}`);
    const result: ProbeResult = { greetingMs: greeting.at - t0, pid: child.pid as number };
    if (opts.untilAnswer || opts.untilRunning) {
      // Both commands in one write: QMP answers in order, and no round trip is spent waiting.
      socket.write('{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n');
      await lines.reply(timeoutMs);
      for (let first = true; ; first = false) {
        if (!first) socket.write('{"execute":"query-status"}\n');
        const r = await lines.reply(timeoutMs);
        const status = (r.json.return as { status?: string } | undefined)?.status;
        if (first) {
          result.answeredMs = r.at - t0;
          result.firstStatus = status ?? '?';
        }
        if (status === 'running') result.runningMs = r.at - t0;
        if (!opts.untilRunning || status === 'running') break;
        if (performance.now() - t0 > timeoutMs) throw new Error(`qemu still ${status} after ${timeoutMs} ms`);
      }
    }
    return result;
  } catch (err) {
    const why = spawnError ? `could not spawn ${binary}: ${(spawnError as Error).message}` : (err as Error).message;
    throw new Error(`${why}${stderr ? `; qemu said: ${stderr.trim()}` : ''}`, { cause: err });
  } finally {
    socket?.destroy();
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
}
