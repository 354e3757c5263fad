/**
 * What the VM operations need of etcd: the key space, the raw store (for
 * watches) and the VM repository. The CLI's StoreSession and the API's store
 * both satisfy it, so one implementation of "create a VM" or "ask a VM to
 * stop" serves both front doors.
 */
import type { KeySpace } from '../contract/keys.js';
import type { KvStore } from '../store/kv-store.js';
import type { VmRepository } from '../store/vm-repository.js';

export interface VmStore {
  readonly keys: KeySpace;
  readonly kv: KvStore;
  readonly vms: VmRepository;
}
