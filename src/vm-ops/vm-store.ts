/**
 * What the VM operations need of etcd: the key space, the raw store (for
 * watches) and the VM repository. The CLI's StoreSession and the API's store
 * both satisfy it, so one implementation of "create a VM" or "ask a VM to
 * stop" serves both front doors.
 */
import type { KeySpace } from '../contract/keys.js';
import type { KvStore } from '../store/kv-store.js';
import type { JsonObject, VmRepository } from '../store/vm-repository.js';

export interface VmStore {
  readonly keys: KeySpace;
  readonly kv: KvStore;
  readonly vms: VmRepository;
}

/** What every request written into a VM record takes besides its own fields. */
export interface VmRequestOptions {
  /** The VM: uuid, unique uuid prefix or name. */
  ref: string;
  /** Seconds to wait for the outcome, or null to return once the request is written. */
  waitSeconds: number | null;
  onProgress(line: string): void;
  /** Called with the newest record before each write attempt; throws to refuse (the API's owner check). */
  authorize?(record: JsonObject): void;
}
