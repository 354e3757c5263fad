/**
 * A small typed QMP client over a unix socket.
 *
 * Theory of operation: qemu speaks newline-delimited JSON. It first sends a
 * greeting, then waits for `qmp_capabilities`; after that it answers commands
 * in order and interleaves asynchronous events. Every command carries an `id`
 * and replies are matched on it, so several commands may be in flight.
 *
 * qemu's QMP chardev accepts one client at a time: a second client's connect()
 * succeeds (it sits in the listen backlog) but gets no greeting until the
 * first one leaves. That is why connecting waits for the greeting, not just
 * for the socket, and why the agent keeps exactly one connection per VM.
 *
 * QMP faults are translated here, once (STYLE.md 6): a command's error reply
 * becomes `QmpCommandError` (code QMP_ERROR, qemu's own `desc`, not retryable),
 * a lost connection QMP_CLOSED (retryable: the VM may come back), a reply that
 * never comes TIMEOUT.
 */
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { DroverError } from '../../lib/errors.js';
import {
  QMP_EVENT_NAMES,
  type QmpCommandName,
  type QmpErrorBody,
  type QmpEvent,
  type QmpEventMap,
  type QmpEventName,
  type QmpExecuteArgs,
  type QmpGreeting,
  type QmpOtherEvent,
  type QmpReturnOf,
  type QmpTimestamp,
} from './qmp-types.js';

export class QmpCommandError extends DroverError {
  override readonly name = 'QmpCommandError';
  constructor(
    readonly command: string,
    /** qemu's error class, e.g. "GenericError", "CommandNotFound". */
    readonly qmpClass: string,
    desc: string,
  ) {
    super('QMP_ERROR', desc, false);
  }
}

export type QmpClientEvents = {
  /** Every known event, as a discriminated union. */
  event: [ev: QmpEvent];
  /** Events `qmp-types.ts` does not type. */
  'other-event': [ev: QmpOtherEvent];
  /** The connection is gone (qemu exited, or close() was called). Emitted once. */
  close: [];
} & { [E in QmpEventName]: [data: QmpEventMap[E], timestamp: QmpTimestamp] };

export interface QmpConnectOptions {
  /** Give up (TIMEOUT) when no greeting arrived within this many ms. */
  timeoutMs: number;
  /** Stops the attempt (QMP_CLOSED). */
  signal?: AbortSignal;
  /** Checked between attempts: true when the peer is known to be gone (qemu exited), to stop at once. */
  isGone?: () => boolean;
  /** Wait between attempts while the socket does not exist yet; 5 ms by default (start latency counts). */
  pollMs?: number;
  /** How long one command may take; 10 s by default. */
  commandTimeoutMs?: number;
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

const RETRY_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);
const knownEvents = new Set<string>(QMP_EVENT_NAMES);

export class QmpClient extends EventEmitter<QmpClientEvents> {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private greetingWaiter: { resolve(g: QmpGreeting): void; reject(e: Error): void } | null = null;
  private isClosed = false;
  private readonly closedPromise: Promise<void>;
  greeting: QmpGreeting | null = null;

  private constructor(
    private readonly socket: Socket,
    private readonly path: string,
    private readonly commandTimeoutMs: number,
  ) {
    super();
    let markClosed: () => void = () => undefined;
    this.closedPromise = new Promise((resolve) => (markClosed = resolve));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    // 'error' is always followed by 'close'; handling it keeps node from throwing.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.onClose();
      markClosed();
    });
  }

  /**
   * Connects to the QMP socket at `path`, retrying while it does not exist or
   * refuses, reads the greeting and negotiates capabilities.
   */
  static async connect(path: string, opts: QmpConnectOptions): Promise<QmpClient> {
    const deadline = Date.now() + opts.timeoutMs;
    const pollMs = opts.pollMs ?? 5;
    const socket = await connectWithRetry(path, deadline, pollMs, opts);
    const client = new QmpClient(socket, path, opts.commandTimeoutMs ?? 10_000);
    try {
      client.greeting = await client.waitForGreeting(deadline, opts.signal);
      await client.execute('qmp_capabilities');
      return client;
    } catch (err) {
      await client.close();
      throw err;
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Runs one command and resolves with its `return` value. */
  execute<C extends QmpCommandName>(command: C, ...args: QmpExecuteArgs<C>): Promise<QmpReturnOf<C>> {
    if (this.isClosed) {
      return Promise.reject(closedError(this.path, command));
    }
    const id = `drover-${this.nextId++}`;
    const message: Record<string, unknown> = { execute: command, id };
    if (args[0] !== undefined) message.arguments = args[0];
    return new Promise<QmpReturnOf<C>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DroverError('TIMEOUT', `qemu did not answer QMP ${command} within ${this.commandTimeoutMs} ms.`, true));
      }, this.commandTimeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Closes the connection; resolves once the socket is closed. Never stops qemu. */
  async close(): Promise<void> {
    if (!this.socket.destroyed) this.socket.destroy();
    await this.closedPromise;
  }

  private waitForGreeting(deadline: number, signal?: AbortSignal): Promise<QmpGreeting> {
    if (this.greeting) return Promise.resolve(this.greeting);
    if (this.isClosed) {
      return Promise.reject(new DroverError('QMP_CLOSED', `qemu closed the QMP connection on ${this.path} before its greeting.`, true));
    }
    return new Promise<QmpGreeting>((resolve, reject) => {
      const finish = (fn: () => void): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.greetingWaiter = null;
        fn();
      };
      const timer = setTimeout(
        () => finish(() => reject(new DroverError('TIMEOUT', `qemu sent no QMP greeting on ${this.path} in time (is another client connected?).`, true))),
        Math.max(0, deadline - Date.now()),
      );
      const onAbort = (): void => finish(() => reject(abortedError(this.path)));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.greetingWaiter = {
        resolve: (g) => finish(() => resolve(g)),
        reject: (e) => finish(() => reject(e)),
      };
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline = this.buffer.indexOf('\n');
    while (newline >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line !== '') this.onLine(line);
      newline = this.buffer.indexOf('\n');
    }
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      return; // qemu only sends JSON; a torn or foreign line cannot be matched to anything
    }
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as Record<string, unknown>;
    if ('QMP' in m) {
      this.greeting = m as unknown as QmpGreeting;
      this.greetingWaiter?.resolve(this.greeting);
    } else if (typeof m.event === 'string') {
      this.onEvent(m.event, m.data ?? {}, m.timestamp as QmpTimestamp);
    } else if ('return' in m || 'error' in m) {
      this.onReply(m);
    }
  }

  private onReply(m: Record<string, unknown>): void {
    // A reply without an id answers something qemu could not parse: the oldest request.
    const id = typeof m.id === 'string' ? m.id : this.pending.keys().next().value;
    if (id === undefined) return;
    const p = this.pending.get(id);
    if (!p) return; // timed out already
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in m) {
      const body = m.error as QmpErrorBody;
      p.reject(new QmpCommandError(p.command, String(body?.class ?? 'GenericError'), String(body?.desc ?? 'unknown QMP error')));
    } else {
      p.resolve(m.return);
    }
  }

  private onEvent(name: string, data: unknown, timestamp: QmpTimestamp): void {
    if (knownEvents.has(name)) {
      const ev = { event: name, data, timestamp } as QmpEvent;
      this.emit('event', ev);
      (this.emit as (n: string, d: unknown, t: QmpTimestamp) => boolean)(name, data, timestamp);
    } else {
      this.emit('other-event', { event: name, data, timestamp });
    }
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(closedError(this.path, p.command));
    }
    this.greetingWaiter?.reject(new DroverError('QMP_CLOSED', `qemu closed the QMP connection on ${this.path} before its greeting.`, true));
    this.emit('close');
  }
}

function closedError(path: string, command: string): DroverError {
  return new DroverError('QMP_CLOSED', `The QMP connection on ${path} closed before qemu answered ${command}.`, true);
}

function abortedError(path: string): DroverError {
  return new DroverError('QMP_CLOSED', `Connecting to QMP on ${path} was aborted.`, true);
}

async function connectWithRetry(path: string, deadline: number, pollMs: number, opts: QmpConnectOptions): Promise<Socket> {
  for (;;) {
    if (opts.signal?.aborted) throw abortedError(path);
    if (opts.isGone?.()) {
      throw new DroverError('QMP_CLOSED', `qemu exited before its QMP socket ${path} accepted a connection.`, true);
    }
    try {
      return await connectOnce(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (!RETRY_CODES.has(code)) {
        throw new DroverError('QMP_CLOSED', `Could not connect to QMP on ${path}: ${(err as Error).message}.`, true, { cause: err });
      }
    }
    if (Date.now() >= deadline) {
      throw new DroverError('TIMEOUT', `The QMP socket ${path} did not accept a connection in time.`, true);
    }
    await new Promise((r) => setTimeout(r, pollMs));
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
