/**
 * A sha256 computed on a worker thread, fed in order with views of
 * SharedArrayBuffer memory (no copy): so a restore's event loop only moves
 * bytes while the other core hashes them. `update` resolves when the worker
 * has hashed the view, after which its memory may be reused.
 *
 * This file is both the main thread's class and the worker's script.
 */
import { createHash } from 'node:crypto';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { DroverError, errorMessage } from '../../lib/errors.js';

type Request = { id: number; chunk: Uint8Array } | { id: number; digest: true };
type Reply = { id: number; digest?: string };

export class WorkerSha256 {
  private readonly worker = new Worker(new URL(import.meta.url));
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: unknown) => void }>();
  private nextId = 0;
  private failed: unknown;

  constructor() {
    this.worker.on('message', (r: Reply) => {
      const w = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      w?.resolve(r);
    });
    const fail = (err: unknown): void => {
      this.failed ??= new DroverError('S3_ERROR', `The download's sha256 worker thread failed: ${errorMessage(err)}.`);
      for (const w of this.waiting.values()) w.reject(this.failed);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`it exited with code ${code}`)));
    // Not unref'd: while a reply is awaited the worker is all that keeps the
    // process alive (a CLI would otherwise exit mid-restore); close() ends it.
  }

  /** Hashes `chunk` (a view of a SharedArrayBuffer) after every earlier update. */
  async update(chunk: Uint8Array): Promise<void> {
    if (!(chunk.buffer instanceof SharedArrayBuffer)) throw new TypeError('WorkerSha256 needs views of a SharedArrayBuffer.');
    await this.ask((id) => ({ id, chunk }));
  }

  async digest(): Promise<string> {
    const r = await this.ask((id) => ({ id, digest: true }));
    return r.digest ?? '';
  }

  async close(): Promise<void> {
    this.failed ??= new DroverError('S3_ERROR', "The download's sha256 worker thread was closed.");
    await this.worker.terminate();
  }

  private ask(make: (id: number) => Request): Promise<Reply> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage(make(id));
    });
  }
}

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  const hash = createHash('sha256');
  port.on('message', (m: Request) => {
    if ('digest' in m) port.postMessage({ id: m.id, digest: hash.digest('hex') } satisfies Reply);
    else {
      hash.update(m.chunk);
      port.postMessage({ id: m.id } satisfies Reply);
    }
  });
}
