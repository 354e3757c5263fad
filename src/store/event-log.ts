/**
 * The cluster event log, `P/log/<sortable-id>` (CONTRACT.md section 5).
 * Retention is a count limit: `prune` deletes the oldest entries beyond it.
 * Readers list it oldest first and may then `follow` it: a watch from the
 * revision the list was read at, so no event is missed or seen twice.
 */
import { eventId, type DroverEvent } from '../contract/event.js';
import type { KeySpace } from '../contract/keys.js';
import type { KvEntry, KvStore, WatchHandle } from './kv-store.js';

export interface StoredEvent extends DroverEvent {
  id: string;
}

export interface FollowHandlers {
  onEvent(event: StoredEvent): void;
  /** The watch cannot resume (the revision was compacted, etcd cancelled it). */
  onBroken(reason: string): void;
}

export class EventLog {
  constructor(
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
  ) {}

  async append(event: DroverEvent): Promise<string> {
    const op = this.appendOp(event);
    await this.kv.put(op.put, op.raw);
    return this.keys.idOf(op.put, this.keys.logPrefix);
  }

  /** The event as a write for another transaction (KvStore.txn), so it is committed with the change it reports. */
  appendOp(event: DroverEvent): { put: string; raw: string } {
    return { put: this.keys.log(eventId(new Date(event.ts))), raw: JSON.stringify(event) };
  }

  /** Events oldest first, optionally only those about one VM. */
  async list(opts: { vm?: string; limit?: number } = {}): Promise<StoredEvent[]> {
    return (await this.listWithRevision(opts)).events;
  }

  /** Like `list`, with the store revision it was read at (for `follow`). */
  async listWithRevision(opts: { vm?: string; limit?: number } = {}): Promise<{ events: StoredEvent[]; revision: string }> {
    const { entries, revision } = await this.kv.list(this.keys.logPrefix);
    const events: StoredEvent[] = [];
    for (const e of entries) {
      const ev = this.toEvent(e);
      if (ev && (opts.vm === undefined || ev.vm === opts.vm)) events.push(ev);
    }
    return { events: opts.limit !== undefined ? events.slice(-opts.limit) : events, revision };
  }

  /**
   * Calls `onEvent` for every event appended after `revision` (what
   * `listWithRevision` returned), in order. Deletions (pruning) are not events.
   */
  follow(revision: string, handlers: FollowHandlers): Promise<WatchHandle> {
    return this.kv.watchPrefix(this.keys.logPrefix, (BigInt(revision) + 1n).toString(), {
      onEvent: (w) => {
        // Events are written once; a rewrite of an existing key is not a new event.
        if (w.type !== 'put' || w.entry.createRevision !== w.entry.modRevision) return;
        const ev = this.toEvent(w.entry);
        if (ev) handlers.onEvent(ev);
      },
      onBroken: handlers.onBroken,
    });
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

  /** Someone else's garbage in our log is skipped rather than failing a listing. */
  private toEvent(e: KvEntry): StoredEvent | null {
    let value: unknown;
    try {
      value = JSON.parse(e.raw);
    } catch {
      return null;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
    return { ...(value as DroverEvent), id: this.keys.idOf(e.key, this.keys.logPrefix) };
  }
}
