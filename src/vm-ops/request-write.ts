/**
 * The one compare-and-swap loop behind every request the CLI and the API
 * write into a VM record (status changes, migrations, snapshot requests):
 * each attempt reads the newest record, refuses one that is not a JSON
 * object, lets the caller's `authorize` refuse it (the API's owner check),
 * and asks the pure `decide` what to write, if anything.
 */
import { DroverError } from '../lib/errors.js';
import { rawObject, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import type { VmStore } from './vm-store.js';

export interface RequestWrite<P> {
  /** The plan of the last attempt; null when the record was gone. */
  plan: P | null;
  /** The record as written; null when nothing was (or it was gone). */
  written: StoredVm | null;
  /** The version the last attempt was decided on. */
  seen: StoredVm;
}

export async function writeRequest<P>(
  store: VmStore,
  found: StoredVm,
  label: string,
  authorize: ((record: JsonObject) => void) | undefined,
  decide: (record: JsonObject) => { plan: P; next: JsonObject | null },
): Promise<RequestWrite<P>> {
  let plan: P | null = null;
  let seen = found;
  const written = await store.vms.update(found.uuid, (current) => {
    seen = current;
    const obj = rawObject(current.raw);
    if (!obj) throw new DroverError('INVALID_SPEC', `The record of VM ${label} is not a JSON object; fix or remove it with etcdctl.`);
    authorize?.(obj);
    const decided = decide(obj);
    plan = decided.plan;
    return decided.next;
  });
  return { plan, written, seen };
}
