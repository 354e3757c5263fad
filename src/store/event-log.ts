/**
 * The cluster event log, `P/log/<sortable-id>` (CONTRACT.md section 5).
 * Retention is a count limit: `prune` deletes the oldest entries beyond it.
 */
import { eventId, type DroverEvent } from '../contract/event.js';
import type { KeySpace } from '../contract/keys.js';
import type { KvStore } from './kv-store.js';

export interface StoredEvent extends DroverEvent {
  id: string;
}

export class EventLog {
  constructor(
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
  ) {}

  async append(event: DroverEvent): Promise<string> {
    const id = eventId(new Date(event.ts));
    await this.kv.put(this.keys.log(id), JSON.stringify(event));
    return id;
  }

  /** Events oldest first, optionally only those about one VM. */
  async list(opts: { vm?: string; limit?: number } = {}): Promise<StoredEvent[]> {
    const { entries } = await this.kv.list(this.keys.logPrefix);
    const events: StoredEvent[] = [];
    for (const e of entries) {
      let value: unknown;
      try {
        value = JSON.parse(e.raw);
      } catch {
        continue; // someone else's garbage in our log: skip it rather than fail the listing
      }
      if (typeof value !== 'object' || value === null) continue;
      const ev = { ...(value as DroverEvent), id: this.keys.idOf(e.key, this.keys.logPrefix) };
      if (opts.vm === undefined || ev.vm === opts.vm) events.push(ev);
    }
    return opts.limit !== undefined ? events.slice(-opts.limit) : events;
  }

  /** Deletes the oldest events so that at most `keep` remain; returns how many went. */
  async prune(keep: number): Promise<number> {
    const total = await this.kv.count(this.keys.logPrefix);
    const excess = total - keep;
    if (excess <= 0) return 0;
    const { entries } = await this.kv.list(this.keys.logPrefix, { limit: excess });
    const first = entries[0];
    const last = entries[entries.length - 1];
    if (!first || !last) return 0;
    await this.kv.deleteRange(first.key, last.key);
    return entries.length;
  }
}
