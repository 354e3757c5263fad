/**
 * A VM's history: every version of its record that etcd still holds
 * (walked back through MVCC revisions until the key's creation or the
 * compaction horizon), each with the fields that changed, old and new, and
 * who asked when the change came through the API (its audit event names
 * the revision it wrote). Changes by agents and the scheduler have no
 * requestor: they are drover's own.
 */
import type { KvStore } from '../store/kv-store.js';
import type { StoredEvent } from '../store/event-log.js';
import { rawObject, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import { DroverError } from '../lib/errors.js';

export interface FieldChange {
  field: string;
  old?: unknown;
  new?: unknown;
}

export interface HistoryEntry {
  revision: string;
  status?: unknown;
  changes: FieldChange[];
  requestor?: string;
  token_id?: string;
  at?: string;
  message?: string;
}

export interface VmHistory {
  uuid: string;
  entries: HistoryEntry[];
  /** True when older versions exist but etcd compacted them (or the limit was reached). */
  truncated: boolean;
}

/** Changed fields, one level into objects (spec.memory rather than all of spec). */
export function diffRecords(before: JsonObject | null, after: JsonObject | null): FieldChange[] {
  const out: FieldChange[] = [];
  const walk = (a: unknown, b: unknown, path: string, depth: number): void => {
    if (JSON.stringify(a) === JSON.stringify(b)) return;
    const objA = typeof a === 'object' && a !== null && !Array.isArray(a);
    const objB = typeof b === 'object' && b !== null && !Array.isArray(b);
    if (depth < 2 && (objA || a === undefined) && (objB || b === undefined) && (objA || objB)) {
      const ka = objA ? Object.keys(a as JsonObject) : [];
      const kb = objB ? Object.keys(b as JsonObject) : [];
      for (const k of [...new Set([...ka, ...kb])].sort()) {
        walk(objA ? (a as JsonObject)[k] : undefined, objB ? (b as JsonObject)[k] : undefined, path ? `${path}.${k}` : k, depth + 1);
      }
      return;
    }
    out.push({ field: path, ...(a !== undefined ? { old: a } : {}), ...(b !== undefined ? { new: b } : {}) });
  };
  walk(before ?? undefined, after ?? undefined, '', 0);
  return out;
}

/**
 * `shown` says which versions the caller may see: a `user` sees only the
 * versions that were its own, not those from before the VM was handed to
 * it (nor their requestors); the first of its versions then counts as new.
 */
export async function readVmHistory(kv: KvStore, vm: StoredVm, events: readonly StoredEvent[], limit: number, shown: (record: JsonObject | null) => boolean = () => true): Promise<VmHistory> {
  const versions: { revision: string; obj: JsonObject | null }[] = [{ revision: vm.modRevision, obj: rawObject(vm.raw) }];
  const first = await kv.get(vm.key);
  const created = first?.createRevision ?? vm.modRevision;
  let truncated = false;
  let rev = BigInt(vm.modRevision);
  while (rev > BigInt(created)) {
    if (versions.length > limit) {
      truncated = true;
      break;
    }
    let older;
    try {
      older = await kv.getAt(vm.key, (rev - 1n).toString());
    } catch (err) {
      if (err instanceof DroverError && err.code === 'NOT_FOUND') {
        truncated = true;
        break;
      }
      throw err;
    }
    if (!older) break;
    versions.push({ revision: older.modRevision, obj: rawObject(older.raw) });
    rev = BigInt(older.modRevision);
  }
  const byRevision = new Map(events.filter((e) => e.revision !== undefined).map((e) => [e.revision as string, e]));
  const entries: HistoryEntry[] = [];
  for (let i = Math.min(versions.length, limit) - 1; i >= 0; i--) {
    const v = versions[i] as { revision: string; obj: JsonObject | null };
    if (!shown(v.obj)) continue;
    const prev = versions[i + 1];
    const ev = byRevision.get(v.revision);
    entries.push({
      revision: v.revision,
      status: v.obj?.status,
      changes: diffRecords(prev && shown(prev.obj) ? prev.obj : null, v.obj),
      ...(ev?.requestor ? { requestor: ev.requestor } : {}),
      ...(ev?.token_id ? { token_id: ev.token_id } : {}),
      ...(ev ? { at: ev.ts, message: ev.message } : {}),
    });
  }
  return { uuid: vm.uuid, entries, truncated };
}
