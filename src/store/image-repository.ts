/**
 * Image records in etcd, `P/image/<uuid>` (docs/storage.md): read, create
 * only if absent, replace and delete with compare-and-swap.
 */
import type { KeySpace } from '../contract/keys.js';
import { parseImageRecord, resolveImageRef, type ImageRecord } from '../contract/image-record.js';
import type { ParseResult } from '../contract/vm-record.js';
import type { KvEntry, KvStore } from './kv-store.js';
import type { JsonObject } from './vm-repository.js';

export interface StoredImage {
  uuid: string;
  key: string;
  raw: string;
  modRevision: string;
  parsed: ParseResult<ImageRecord>;
}

export function toStoredImage(entry: KvEntry, keys: KeySpace): StoredImage {
  const uuid = keys.idOf(entry.key, keys.imagePrefix);
  return { uuid, key: entry.key, raw: entry.raw, modRevision: entry.modRevision, parsed: parseImageRecord(entry.raw, uuid) };
}

export class ImageRepository {
  constructor(
    private readonly kv: KvStore,
    readonly keys: KeySpace,
  ) {}

  async get(uuid: string): Promise<StoredImage | null> {
    const entry = await this.kv.get(this.keys.image(uuid));
    return entry ? toStoredImage(entry, this.keys) : null;
  }

  async list(): Promise<StoredImage[]> {
    return (await this.kv.list(this.keys.imagePrefix)).entries.map((e) => toStoredImage(e, this.keys));
  }

  /** The valid records, for resolving names. */
  async listValid(): Promise<ImageRecord[]> {
    return (await this.list()).flatMap((i) => (i.parsed.ok ? [i.parsed.value] : []));
  }

  /** The active image a disk's `image` names (docs/storage.md), or null. */
  async resolve(ref: string): Promise<ImageRecord | null> {
    return resolveImageRef(ref, await this.listValid());
  }

  /** False when the uuid exists. */
  create(uuid: string, record: JsonObject): Promise<boolean> {
    return this.kv.putIf(this.keys.image(uuid), JSON.stringify(record), 'absent');
  }

  /** Writes `next` only if the record is still at the revision read; false when it moved. */
  replace(current: StoredImage, next: JsonObject): Promise<boolean> {
    return this.kv.putIf(current.key, JSON.stringify(next), current.modRevision);
  }

  deleteIf(current: StoredImage): Promise<boolean> {
    return this.kv.deleteIf(current.key, current.modRevision);
  }
}
