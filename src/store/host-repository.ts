/**
 * Host records, `P/host/<name>`, read together with their liveness keys,
 * `P/alive/<name>`. The agent keeps the alive key under its etcd lease
 * (CONTRACT.md section 4), so the key vanishes when the agent is gone for
 * longer than the lease TTL, whatever its last record still says. A host is
 * ALIVE only when its record says so and its alive key exists.
 */
import { hostRecordSchema, type HostRecord } from '../contract/host-record.js';
import type { KeySpace } from '../contract/keys.js';
import type { HostStatus } from '../contract/status.js';
import type { KvStore } from './kv-store.js';
import { rawObject, type JsonObject } from './vm-repository.js';

export interface StoredHost {
  name: string;
  raw: string;
  /** The record as a JSON object, or null when it is not one. */
  record: JsonObject | null;
  /** The typed record, or null when it does not match the schema. */
  parsed: HostRecord | null;
  /** Whether `P/alive/<name>` exists (the agent's lease is live). */
  aliveKey: boolean;
  /** ALIVE only if the record says ALIVE and the alive key exists. */
  status: HostStatus;
}

function toStoredHost(name: string, raw: string, aliveKey: boolean): StoredHost {
  const record = rawObject(raw);
  const result = hostRecordSchema.safeParse(record);
  const parsed = result.success ? result.data : null;
  const claimsAlive = record !== null && record.status === 'ALIVE';
  return { name, raw, record, parsed, aliveKey, status: claimsAlive && aliveKey ? 'ALIVE' : 'DEAD' };
}

export class HostRepository {
  constructor(
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
  ) {}

  /** Every host record, by name, with its liveness. */
  async list(): Promise<StoredHost[]> {
    const [hosts, alive] = await Promise.all([this.kv.list(this.keys.hostPrefix), this.kv.list(this.keys.alivePrefix)]);
    const aliveNames = new Set(alive.entries.map((e) => this.keys.idOf(e.key, this.keys.alivePrefix)));
    return hosts.entries.map((e) => {
      const name = this.keys.idOf(e.key, this.keys.hostPrefix);
      return toStoredHost(name, e.raw, aliveNames.has(name));
    });
  }

  async get(name: string): Promise<StoredHost | null> {
    const [entry, alive] = await Promise.all([this.kv.get(this.keys.host(name)), this.kv.get(this.keys.alive(name))]);
    return entry ? toStoredHost(name, entry.raw, alive !== null) : null;
  }
}
