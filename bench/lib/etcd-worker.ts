/**
 * An etcd client in its own worker thread, with its own gRPC connection, for
 * the placement benchmark: what it does must not take event-loop time from
 * the scheduler under test, which runs on the main thread.
 *
 *  - kind "watch": watches `prefix` from its current revision and stamps, per
 *    key, the first put whose record says status SCHEDULED with a host; posts
 *    "done" once `expect` distinct keys were seen, with every stamp.
 *  - kind "write": on "go", creates every entry (create-if-absent
 *    transactions, as `VmRepository.create` does) with `concurrency` in
 *    flight, and posts each commit's stamp.
 *
 * Stamps are `performance.timeOrigin + performance.now()` (epoch ms, sub-ms
 * resolution), comparable across threads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { createEtcdClient } from '../../src/store/etcd-client.js';
import { KvStore, type WatchHandle } from '../../src/store/kv-store.js';

export interface WatchJob {
  kind: 'watch';
  endpoint: string;
  prefix: string;
  expect: number;
}

export interface WriteJob {
  kind: 'write';
  endpoint: string;
  entries: Array<{ key: string; raw: string }>;
  concurrency: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'error'; message: string }
  /** keys: key → first SCHEDULED stamp; scheduledPuts counts every SCHEDULED put, repeats included. */
  | { type: 'watched'; keys: Array<[string, number]>; scheduledPuts: number; otherPuts: number; repeats: number }
  | { type: 'written'; t0: number; t1: number; stamps: number[]; failed: number }
  | { type: 'closed' };

export const now = (): number => performance.timeOrigin + performance.now();

function post(m: WorkerMessage): void {
  parentPort?.postMessage(m);
}

async function runWatch(job: WatchJob): Promise<void> {
  const client = createEtcdClient([job.endpoint]);
  const kv = new KvStore(client);
  const first = new Map<string, number>();
  const puts = new Map<string, number>();
  let scheduledPuts = 0;
  let otherPuts = 0;
  let handle: WatchHandle | null = null;
  let reported = false;
  const report = (): void => {
    if (reported) return;
    reported = true;
    let repeats = 0;
    for (const n of puts.values()) if (n > 1) repeats++;
    post({ type: 'watched', keys: [...first], scheduledPuts, otherPuts, repeats });
  };
  const { revision } = await kv.list(job.prefix, { limit: 1 });
  handle = await kv.watchPrefix(job.prefix, String(BigInt(revision) + 1n), {
    onEvent: (e) => {
      if (e.type !== 'put') return;
      const at = now();
      let rec: { status?: unknown; host?: unknown } | null = null;
      try {
        rec = JSON.parse(e.entry.raw) as { status?: unknown; host?: unknown };
      } catch {
        // not a record
      }
      if (rec?.status === 'SCHEDULED' && typeof rec.host === 'string' && rec.host !== '') {
        scheduledPuts++;
        puts.set(e.entry.key, (puts.get(e.entry.key) ?? 0) + 1);
        if (!first.has(e.entry.key)) first.set(e.entry.key, at);
        if (first.size >= job.expect) report();
      } else {
        otherPuts++;
      }
    },
    onBroken: (why) => post({ type: 'error', message: `watch broke: ${why}` }),
  });
  post({ type: 'ready' });
  parentPort?.on('message', (m: string) => {
    if (m === 'report') report();
    if (m !== 'close') return;
    void (async () => {
      await handle?.close();
      client.close();
      post({ type: 'closed' });
      parentPort?.close();
    })();
  });
}

async function runWrite(job: WriteJob): Promise<void> {
  const client = createEtcdClient([job.endpoint]);
  const kv = new KvStore(client);
  await kv.get('/warm-up'); // the connection is open before "go"
  post({ type: 'ready' });
  parentPort?.on('message', (m: string) => {
    if (m === 'close') {
      client.close();
      post({ type: 'closed' });
      parentPort?.close();
      return;
    }
    if (m !== 'go') return;
    void (async () => {
      const stamps = new Array<number>(job.entries.length).fill(Number.NaN);
      let next = 0;
      let failed = 0;
      const t0 = now();
      const lane = async (): Promise<void> => {
        for (let i = next++; i < job.entries.length; i = next++) {
          const e = job.entries[i]!;
          if (await kv.putIf(e.key, e.raw, 'absent')) stamps[i] = now();
          else failed++;
        }
      };
      await Promise.all(Array.from({ length: job.concurrency }, lane));
      post({ type: 'written', t0, t1: now(), stamps, failed });
    })().catch((err: unknown) => post({ type: 'error', message: (err as Error).message }));
  });
}

if (parentPort) {
  const job = workerData as WatchJob | WriteJob;
  (job.kind === 'watch' ? runWatch(job) : runWrite(job)).catch((err: unknown) => post({ type: 'error', message: (err as Error).stack ?? String(err) }));
}
