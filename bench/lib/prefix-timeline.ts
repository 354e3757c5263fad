/**
 * One etcd watch on a whole key prefix that stamps every event on arrival
 * (performance.now() in the watch callback) and keeps them in order, so a
 * benchmark can ask "when was the first event like this, after t0" and wait
 * for one without polling: a liveness key deleted, a host record turning
 * DEAD, a VM record reaching a status on a given host.
 */
import { performance } from 'node:perf_hooks';
import type { KvStore, WatchHandle } from '../../src/store/kv-store.js';

export interface TimedEvent {
  at: number;
  type: 'put' | 'delete';
  key: string;
  /** The value parsed as JSON (puts of JSON objects only). */
  value: Record<string, unknown> | null;
}

export class PrefixTimeline {
  readonly events: TimedEvent[] = [];
  private handle: WatchHandle | null = null;
  private broken: string | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly kv: KvStore,
    private readonly prefix: string,
  ) {}

  async start(): Promise<void> {
    const { revision } = await this.kv.list(this.prefix, { limit: 1 });
    this.handle = await this.kv.watchPrefix(this.prefix, String(BigInt(revision) + 1n), {
      onEvent: (e) => {
        const at = performance.now();
        if (e.type === 'put') {
          let value: Record<string, unknown> | null = null;
          try {
            const v: unknown = JSON.parse(e.entry.raw);
            if (typeof v === 'object' && v !== null && !Array.isArray(v)) value = v as Record<string, unknown>;
          } catch {
            // not JSON
          }
          this.events.push({ at, type: 'put', key: e.entry.key, value });
        } else {
          this.events.push({ at, type: 'delete', key: e.key, value: null });
        }
        for (const w of [...this.waiters]) w();
      },
      onBroken: (why) => {
        this.broken = why;
        for (const w of [...this.waiters]) w();
      },
    });
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = null;
  }

  /** The first event at or after `since` that matches. */
  first(test: (e: TimedEvent) => boolean, since = 0): TimedEvent | undefined {
    return this.events.find((e) => e.at >= since && test(e));
  }

  /** Waits for the first event at or after `since` that matches. */
  waitFor(test: (e: TimedEvent) => boolean, since: number, timeoutMs: number, what: string): Promise<TimedEvent> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const check = (): void => {
        if (this.broken) {
          finish();
          reject(new Error(`the benchmark's etcd watch broke: ${this.broken}`));
          return;
        }
        const hit = this.first(test, since);
        if (hit) {
          finish();
          resolve(hit);
        }
      };
      const finish = (): void => {
        this.waiters.delete(check);
        clearTimeout(timer);
      };
      timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
}
