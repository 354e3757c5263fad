/**
 * Pool records in etcd, `P/pool/<name>` (docs/pools.md): read, create only
 * if absent, replace and delete with compare-and-swap. Users own every field
 * but `status`, which the leading scheduler writes; a replace keeps it.
 */
import type { KeySpace } from '../contract/keys.js';
import { parsePoolRecord, type PoolRecord } from '../contract/pool-record.js';
import type { ParseResult } from '../contract/vm-record.js';
import type { KvEntry, KvStore } from './kv-store.js';
import type { JsonObject } from './vm-repository.js';

export interface StoredPool {
  name: string;
  key: string;
  raw: string;
  modRevision: string;
  parsed: ParseResult<PoolRecord>;
}

export function toStoredPool(entry: KvEntry, keys: KeySpace): StoredPool {
  const name = keys.idOf(entry.key, keys.poolPrefix);
  return { name, key: entry.key, raw: entry.raw, modRevision: entry.modRevision, parsed: parsePoolRecord(entry.raw, name) };
}

export class PoolRepository {
  constructor(
    private readonly kv: KvStore,
    readonly keys: KeySpace,
  ) {}

  async get(name: string): Promise<StoredPool | null> {
    const entry = await this.kv.get(this.keys.pool(name));
    return entry ? toStoredPool(entry, this.keys) : null;
  }

  async list(): Promise<StoredPool[]> {
    return (await this.kv.list(this.keys.poolPrefix)).entries.map((e) => toStoredPool(e, this.keys));
  }

  /** False when a pool of that name exists. */
  create(name: string, record: JsonObject): Promise<boolean> {
    return this.kv.putIf(this.keys.pool(name), JSON.stringify(record), 'absent');
  }

  /** Writes `next` only if the record is still at the revision read; false when it moved. */
  replace(current: StoredPool, next: JsonObject): Promise<boolean> {
    return this.kv.putIf(current.key, JSON.stringify(next), current.modRevision);
  }

  deleteIf(current: StoredPool): Promise<boolean> {
    return this.kv.deleteIf(current.key, current.modRevision);
  }
}
