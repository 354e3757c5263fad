/**
 * One etcd watch on `P/vm/` that stamps, for every VM, the moment each
 * status was first seen (performance.now() in the watch callback, i.e. on
 * event arrival) and keeps the last record, so the benchmark can wait for
 * "RUNNING" without polling and read the agent's own timestamps afterwards.
 */
import { performance } from 'node:perf_hooks';
import type { KeySpace } from '../../src/contract/keys.js';
import type { KvStore, WatchHandle } from '../../src/store/kv-store.js';

export type Json = Record<string, unknown>;

interface Waiter {
  /** true: done; false: keep waiting; throws: fail the wait. */
  test(): boolean;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class StatusWatch {
  /** uuid → status → first time it was seen. */
  readonly seen = new Map<string, Map<string, number>>();
  /** uuid → last record seen. */
  readonly records = new Map<string, Json>();
  /** uuid → time the key's deletion was seen. */
  readonly deleted = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();
  private handle: WatchHandle | null = null;
  private broken: string | null = null;

  constructor(
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
  ) {}

  async start(): Promise<void> {
    const { revision } = await this.kv.list(this.keys.vmPrefix);
    this.handle = await this.kv.watchPrefix(this.keys.vmPrefix, String(BigInt(revision) + 1n), {
      onEvent: (e) => {
        const at = performance.now();
        if (e.type === 'put') {
          const uuid = this.keys.idOf(e.entry.key, this.keys.vmPrefix);
          let rec: Json;
          try {
            rec = JSON.parse(e.entry.raw) as Json;
          } catch {
            return;
          }
          this.records.set(uuid, rec);
          const status = typeof rec.status === 'string' ? rec.status : '';
          let m = this.seen.get(uuid);
          if (!m) this.seen.set(uuid, (m = new Map()));
          if (!m.has(status)) m.set(status, at);
        } else {
          this.deleted.set(this.keys.idOf(e.key, this.keys.vmPrefix), at);
        }
        this.check();
      },
      onBroken: (why) => {
        this.broken = why;
        this.check();
      },
    });
  }

  async close(): Promise<void> {
    for (const w of this.waiters) clearTimeout(w.timer);
    this.waiters.clear();
    await this.handle?.close();
    this.handle = null;
  }

  seenAt(uuid: string, status: string): number | undefined {
    return this.seen.get(uuid)?.get(status);
  }

  /**
   * Resolves once `test` holds (checked now and after every event). A VM
   * going to ERROR fails the wait at once with the agent's error sentence.
   */
  waitFor(test: () => boolean, timeoutMs: number, what: string, uuids: readonly string[] = []): Promise<void> {
    const guarded = (): boolean => {
      if (this.broken) throw new Error(`the benchmark's etcd watch broke: ${this.broken}`);
      for (const uuid of uuids) {
        const rec = this.records.get(uuid);
        if (rec?.status === 'ERROR') throw new Error(`VM ${uuid} went to ERROR: ${String(rec.error)}`);
      }
      return test();
    };
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        test: guarded,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          const states = uuids.slice(0, 5).map((u) => `${u.slice(0, 8)}=${String(this.records.get(u)?.status ?? (this.deleted.has(u) ? 'deleted' : 'unseen'))}`);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}${states.length ? ` (${states.join(', ')}${uuids.length > 5 ? ', ...' : ''})` : ''}`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
      this.check();
    });
  }

  waitStatus(uuids: readonly string[], status: string, timeoutMs: number): Promise<void> {
    return this.waitFor(() => uuids.every((u) => this.seenAt(u, status) !== undefined), timeoutMs, `${uuids.length} VM(s) to be ${status}`, uuids);
  }

  waitDeleted(uuids: readonly string[], timeoutMs: number): Promise<void> {
    return this.waitFor(() => uuids.every((u) => this.deleted.has(u)), timeoutMs, `${uuids.length} VM(s) to be deleted`, uuids);
  }

  private check(): void {
    for (const w of [...this.waiters]) {
      let done: boolean;
      try {
        done = w.test();
      } catch (err) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.reject(err as Error);
        continue;
      }
      if (done) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve();
      }
    }
  }
}
