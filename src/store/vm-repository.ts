/**
 * VM records in etcd: read, create, and update with compare-and-swap.
 *
 * Updates work on the record's raw JSON object, not on the parsed type, so
 * that fields this version does not know are written back untouched.
 */
import type { KeySpace } from '../contract/keys.js';
import { parseVmRecord, type ParseResult, type VmRecord } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import type { KvEntry, KvOp, KvStore } from './kv-store.js';

export type JsonObject = Record<string, unknown>;

export interface StoredVm {
  uuid: string;
  key: string;
  raw: string;
  modRevision: string;
  parsed: ParseResult<VmRecord>;
}

export function toStoredVm(entry: KvEntry, keys: KeySpace): StoredVm {
  const uuid = keys.idOf(entry.key, keys.vmPrefix);
  return { uuid, key: entry.key, raw: entry.raw, modRevision: entry.modRevision, parsed: parseVmRecord(entry.raw, uuid) };
}

/** Parses a raw value as a JSON object, or null when it is not one. */
export function rawObject(raw: string): JsonObject | null {
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : null;
  } catch {
    return null;
  }
}

export type Mutation = (current: StoredVm) => JsonObject | 'delete' | null;

export class VmRepository {
  constructor(
    private readonly kv: KvStore,
    readonly keys: KeySpace,
  ) {}

  async get(uuid: string): Promise<StoredVm | null> {
    const entry = await this.kv.get(this.keys.vm(uuid));
    return entry ? toStoredVm(entry, this.keys) : null;
  }

  async list(): Promise<{ vms: StoredVm[]; revision: string }> {
    const { entries, revision } = await this.kv.list(this.keys.vmPrefix);
    return { vms: entries.map((e) => toStoredVm(e, this.keys)), revision };
  }

  /** Creates the record; false when a record with that uuid exists. */
  create(uuid: string, record: JsonObject): Promise<boolean> {
    return this.kv.putIf(this.keys.vm(uuid), JSON.stringify(record), 'absent');
  }

  /** Writes `next` only if the record is still at `expectedRevision`. */
  replace(current: StoredVm, next: JsonObject): Promise<boolean> {
    return this.kv.putIf(current.key, JSON.stringify(next), current.modRevision);
  }

  /**
   * Like replace, but resolves with the record as written (new revision), or
   * null on a lost race. `also` (the event that reports the change) is
   * written in the same transaction.
   */
  async replaceAndGet(current: StoredVm, next: JsonObject, also: readonly KvOp[] = []): Promise<StoredVm | null> {
    const raw = JSON.stringify(next);
    const rev = await this.kv.txn([{ key: current.key, expected: current.modRevision }], [{ put: current.key, raw }, ...also]);
    if (rev === null) return null;
    return { uuid: current.uuid, key: current.key, raw, modRevision: rev, parsed: parseVmRecord(raw, current.uuid) };
  }

  /** Deletes the record if it is still at its revision; `also` (the event that reports it) goes in the same transaction. */
  async deleteIf(current: StoredVm, also: readonly KvOp[] = []): Promise<boolean> {
    return (await this.kv.txn([{ key: current.key, expected: current.modRevision }], [{ delete: current.key }, ...also])) !== null;
  }

  /**
   * Read-modify-write with compare-and-swap, retried on a lost race. The
   * mutation sees the latest record each time; returning null leaves it as it
   * is. Resolves with the record as written, or null when it was deleted,
   * left unchanged, or does not exist. `also` (an event reporting the
   * change) is written in the same transaction as the change.
   */
  async update(uuid: string, mutate: Mutation, opts: { maxAttempts?: number; also?: readonly KvOp[] } = {}): Promise<StoredVm | null> {
    const { maxAttempts = 10, also = [] } = opts;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const current = await this.get(uuid);
      if (!current) return null;
      const next = mutate(current);
      if (next === null) return null;
      if (next === 'delete') {
        if (await this.deleteIf(current, also)) return null;
        continue;
      }
      const written = await this.replaceAndGet(current, next, also);
      if (written) return written;
    }
    throw new DroverError('CONFLICT', `VM ${uuid} kept changing under ${maxAttempts} attempts to update it; try again.`, true);
  }
}
