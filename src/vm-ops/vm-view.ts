/**
 * How a stored VM looks to the CLI. Records that fail the schema are still
 * shown (a listing must not break on one bad record), so everything here
 * works from the raw JSON object and falls back gracefully.
 */
import { rawObject, type JsonObject, type StoredVm } from '../store/vm-repository.js';

/** The record's raw object with `uuid` forced to the key's uuid (what users address it by). */
export function vmObject(vm: StoredVm): JsonObject {
  const obj = rawObject(vm.raw);
  return obj ? { ...obj, uuid: vm.uuid } : { uuid: vm.uuid };
}

export function vmName(vm: StoredVm): string | undefined {
  const name = rawObject(vm.raw)?.name;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

export function vmStatus(vm: StoredVm): string | undefined {
  const status = rawObject(vm.raw)?.status;
  return typeof status === 'string' ? status : undefined;
}

/** `web-1 (2b0c4f7e-...)`, or the uuid alone when the record has no name. */
export function vmLabel(vm: StoredVm): string {
  const name = vmName(vm);
  return name ? `${name} (${vm.uuid})` : vm.uuid;
}
