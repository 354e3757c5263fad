/**
 * Every event written under P/log/ during a scenario, kept by the test: a
 * list, then a watch from the listed revision (EventLog.follow). When the
 * watch breaks (etcd compacted the revision it was at, or was killed), it
 * lists again and follows again; events are merged by their id, so a
 * re-list never counts an event twice. The agents' own pruning cannot hide
 * an event from the tap, since it keeps what it has seen.
 */
import type { EventLog, StoredEvent } from '../../../src/store/event-log.js';
import type { WatchHandle } from '../../../src/store/kv-store.js';
import { sleep } from './chaos-env.js';

/** Closes a watch, giving up waiting after 2 s (the watch is dropped either way). */
async function closeSoon(watch: WatchHandle | null): Promise<void> {
  if (!watch) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([watch.close().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, 2000)))]);
  clearTimeout(timer);
}

export class EventTap {
  private readonly byId = new Map<string, StoredEvent>();
  private watch: WatchHandle | null = null;
  private closed = false;
  private relisting: Promise<void> | null = null;
  /** How often the watch had to be re-established (compaction, etcd restarts). */
  relists = 0;

  private constructor(private readonly log: EventLog) {}

  static async open(log: EventLog): Promise<EventTap> {
    const tap = new EventTap(log);
    await tap.listAndFollow();
    return tap;
  }

  /** Events about one VM, oldest first. */
  forVm(uuid: string): StoredEvent[] {
    return [...this.byId.values()].filter((e) => e.vm === uuid).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  all(): StoredEvent[] {
    return [...this.byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Lists once more and merges (call before the final checks: a watch may lag). */
  async sync(): Promise<void> {
    for (const e of (await this.log.listWithRevision()).events) this.byId.set(e.id, e);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.relisting;
    await closeSoon(this.watch);
  }

  private async listAndFollow(): Promise<void> {
    const { events, revision } = await this.log.listWithRevision();
    for (const e of events) this.byId.set(e.id, e);
    this.watch = await this.log.follow(revision, {
      onEvent: (e) => this.byId.set(e.id, e),
      onBroken: () => {
        this.relisting ??= this.relist().finally(() => (this.relisting = null));
      },
    });
  }

  private async relist(): Promise<void> {
    this.relists++;
    // A broken watcher's cancel can wait forever for an answer etcd never sends: not awaited.
    void closeSoon(this.watch);
    while (!this.closed) {
      try {
        await this.listAndFollow();
        return;
      } catch {
        await sleep(200); // etcd away: try again
      }
    }
  }
}
