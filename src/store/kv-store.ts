/**
 * The etcd boundary: raw key-value reads, compare-and-swap writes and prefix
 * watches. Everything above talks to this class, never to etcd3 directly, and
 * etcd's errors are translated here into DroverError (retryable).
 *
 * Every update of an existing key is a transaction that compares the key's
 * mod revision (CONTRACT.md section 2): a writer that lost a race gets `false`
 * and must re-read and re-decide.
 */
import { EtcdPermissionDeniedError, Range, type Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { DroverError, errorMessage } from '../lib/errors.js';

export interface KvEntry {
  key: string;
  raw: string;
  modRevision: string;
  createRevision: string;
  lease: string;
}

export interface KvList {
  entries: KvEntry[];
  /** The store revision the list was read at; watch from revision + 1. */
  revision: string;
}

/** `'absent'` as the expected revision means "only if the key does not exist". */
export type ExpectedRevision = string | 'absent';

/** One write of a transaction. */
export type KvOp = { put: string; raw: string } | { delete: string };

export type WatchEvent = { type: 'put'; entry: KvEntry } | { type: 'delete'; key: string; modRevision: string };

export interface WatchHandlers {
  onEvent(event: WatchEvent): void;
  /** The watch could not resume (compaction, cancel): re-list and watch again. */
  onBroken(reason: string): void;
  onDisconnected?(reason: string): void;
  onReconnected?(): void;
}

export interface WatchHandle {
  close(): Promise<void>;
}

function toEntry(kv: IKeyValue): KvEntry {
  return {
    key: kv.key.toString(),
    raw: kv.value.toString(),
    modRevision: String(kv.mod_revision),
    createRevision: String(kv.create_revision),
    lease: String(kv.lease),
  };
}

async function translate<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof DroverError) throw err;
    if (err instanceof EtcdPermissionDeniedError) {
      // etcd's RBAC (docs/security.md): this client's etcd user may not do it; retrying will not help.
      throw new DroverError('FORBIDDEN', `etcd refused the ${what}: this client's etcd user has no permission for it.`, false, { cause: err });
    }
    throw new DroverError('ETCD_UNAVAILABLE', `etcd ${what} failed: ${errorMessage(err)}`, true, { cause: err });
  }
}

export class KvStore {
  constructor(readonly client: Etcd3) {}

  get(key: string): Promise<KvEntry | null> {
    return translate(`read of ${key}`, async () => {
      const res = await this.client.get(key).exec();
      const kv = res.kvs[0];
      return kv ? toEntry(kv) : null;
    });
  }

  /**
   * The key as it was at `revision` (etcd's MVCC history), or null when it
   * did not exist then; throws ETCD_UNAVAILABLE (not retryable) when etcd
   * has compacted that revision away.
   */
  getAt(key: string, revision: string): Promise<KvEntry | null> {
    return translate(`read of ${key} at revision ${revision}`, async () => {
      try {
        const res = await this.client.get(key).revision(revision).exec();
        const kv = res.kvs[0];
        return kv ? toEntry(kv) : null;
      } catch (err) {
        if (/compacted/i.test(errorMessage(err))) throw new DroverError('NOT_FOUND', `Revision ${revision} of ${key} was compacted.`, false, { cause: err });
        throw err;
      }
    });
  }

  list(prefix: string, opts: { limit?: number } = {}): Promise<KvList> {
    return translate(`list of ${prefix}`, async () => {
      let q = this.client.getAll().prefix(prefix).sort('Key', 'Ascend');
      if (opts.limit !== undefined) q = q.limit(opts.limit);
      const res = await q.exec();
      return { entries: res.kvs.map(toEntry), revision: String(res.header.revision) };
    });
  }

  count(prefix: string): Promise<number> {
    return translate(`count of ${prefix}`, () => this.client.getAll().prefix(prefix).count());
  }

  /** Unconditional put: only for keys one writer owns (events, its own host record). */
  put(key: string, raw: string, lease?: string): Promise<void> {
    return translate(`write of ${key}`, async () => {
      const p = this.client.put(key).value(raw);
      await (lease ? p.lease(lease) : p).exec();
    });
  }

  /** Writes `raw` only if the key is still at `expected`; false when it moved. */
  async putIf(key: string, raw: string, expected: ExpectedRevision, lease?: string): Promise<boolean> {
    return (await this.putIfRevision(key, raw, expected, lease)) !== null;
  }

  /** Like putIf, but resolves with the key's new mod revision, or null when it moved. */
  putIfRevision(key: string, raw: string, expected: ExpectedRevision, lease?: string): Promise<string | null> {
    return translate(`write of ${key}`, async () => {
      const put = this.client.put(key).value(raw);
      const res = await this.client
        .if(key, expected === 'absent' ? 'Create' : 'Mod', '==', expected === 'absent' ? 0 : expected)
        .then(lease ? put.lease(lease) : put)
        .commit();
      // A successful transaction's header revision is the revision it wrote.
      return res.succeeded ? String(res.header.revision) : null;
    });
  }

  /**
   * Writes `raw` only if the key is still at `expected` AND `guardKey` exists
   * (a leader's election key): a scheduler that lost its leadership cannot
   * write, even if it has not noticed yet.
   */
  putIfGuarded(key: string, raw: string, expected: string, guardKey: string): Promise<boolean> {
    return translate(`write of ${key}`, async () => {
      const res = await this.client
        .if(key, 'Mod', '==', expected)
        .and(guardKey, 'Create', '>', 0)
        .then(this.client.put(key).value(raw))
        .commit();
      return res.succeeded;
    });
  }

  /**
   * One leader's transaction: applies `ops` only if `guardKey` exists and
   * every key is still at its expected revision (`'absent'`: does not
   * exist). Resolves with the revision written, or null when a compare failed.
   * The pool manager creates a VM only while the pool record is unchanged, so
   * a pool deleted meanwhile gets no new VM.
   */
  guardedTxn(guardKey: string, compares: readonly { key: string; expected: ExpectedRevision }[], ops: readonly KvOp[]): Promise<string | null> {
    return this.txn(compares, ops, guardKey);
  }

  /**
   * Applies `ops` at once only if every key is still at its expected
   * revision (and `guardKey`, when given, exists). Resolves with the
   * revision written, or null when a compare failed. A record's change and
   * the event that reports it go together this way: neither without the other.
   */
  txn(compares: readonly { key: string; expected: ExpectedRevision }[], ops: readonly KvOp[], guardKey?: string): Promise<string | null> {
    return translate(`transaction on ${ops.map((o) => ('put' in o ? o.put : o.delete)).join(', ')}`, async () => {
      type Cond = [key: string, target: 'Create' | 'Mod', op: '==' | '>', value: number | string];
      const conds: Cond[] = [
        ...(guardKey !== undefined ? [[guardKey, 'Create', '>', 0] as Cond] : []),
        ...compares.map((c): Cond => (c.expected === 'absent' ? [c.key, 'Create', '==', 0] : [c.key, 'Mod', '==', c.expected])),
      ];
      const [head, ...rest] = conds;
      if (!head) throw new Error('A transaction needs at least one compare.');
      let txn = this.client.if(...head);
      for (const c of rest) txn = txn.and(...c);
      const res = await txn.then(...ops.map((o) => ('put' in o ? this.client.put(o.put).value(o.raw) : this.client.delete().key(o.delete)))).commit();
      return res.succeeded ? String(res.header.revision) : null;
    });
  }

  /**
   * A lease that is not kept alive: keys put under it vanish `ttlSeconds`
   * after the grant (web sessions, login links, login throttles).
   */
  grantLease(ttlSeconds: number): Promise<string> {
    return translate('lease grant', async () => {
      const res = await this.client.leaseClient.leaseGrant({ TTL: Math.max(1, Math.ceil(ttlSeconds)), ID: 0 });
      return String(res.ID);
    });
  }

  deleteIf(key: string, expected: string): Promise<boolean> {
    return translate(`delete of ${key}`, async () => {
      const res = await this.client.if(key, 'Mod', '==', expected).then(this.client.delete().key(key)).commit();
      return res.succeeded;
    });
  }

  delete(key: string): Promise<void> {
    return translate(`delete of ${key}`, async () => {
      await this.client.delete().key(key).exec();
    });
  }

  /** Deletes the keys in [from, to] inclusive (used for event retention). */
  deleteRange(from: string, toInclusive: string): Promise<void> {
    return translate('range delete', async () => {
      await this.client.delete().range(new Range(from, `${toInclusive}\0`)).exec();
    });
  }

  /**
   * Watches every key under `prefix` from `fromRevision` on. etcd3 reconnects
   * the stream by itself and resumes at the last revision it saw; when etcd
   * has compacted that revision, the watch is cancelled and `onBroken` fires.
   */
  async watchPrefix(prefix: string, fromRevision: string, handlers: WatchHandlers): Promise<WatchHandle> {
    const watcher: Watcher = await translate(`watch of ${prefix}`, () =>
      this.client.watch().prefix(prefix).startRevision(fromRevision).create(),
    );
    let disconnected = false;
    watcher.on('put', (kv) => handlers.onEvent({ type: 'put', entry: toEntry(kv) }));
    watcher.on('delete', (kv) => handlers.onEvent({ type: 'delete', key: kv.key.toString(), modRevision: String(kv.mod_revision) }));
    watcher.on('disconnected', (err: Error) => {
      disconnected = true;
      handlers.onDisconnected?.(errorMessage(err));
    });
    watcher.on('connected', () => {
      if (disconnected) {
        disconnected = false;
        handlers.onReconnected?.();
      }
    });
    watcher.on('error', (err: Error) => handlers.onBroken(errorMessage(err)));
    return {
      close: async () => {
        watcher.removeAllListeners();
        watcher.on('error', () => undefined);
        await watcher.cancel().catch(() => undefined);
      },
    };
  }

  /**
   * One watch per prefix, as one handle: for a reader whose etcd role may
   * read these prefixes but not everything between them (the scheduler
   * reads no P/auth/). Events of different prefixes are not ordered
   * against each other; each key's are.
   */
  async watchPrefixes(prefixes: readonly string[], fromRevision: string, handlers: WatchHandlers): Promise<WatchHandle> {
    const handles: WatchHandle[] = [];
    let broken = false;
    const once: WatchHandlers = {
      ...handlers,
      onBroken: (why) => {
        if (broken) return;
        broken = true;
        handlers.onBroken(why);
      },
    };
    const close = async (): Promise<void> => {
      await Promise.all(handles.map((h) => h.close()));
    };
    try {
      for (const p of prefixes) handles.push(await this.watchPrefix(p, fromRevision, once));
    } catch (err) {
      await close();
      throw err;
    }
    return { close };
  }
}
