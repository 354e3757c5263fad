/**
 * Owner scoping, in the one place that reads VMs for a caller (STYLE.md 13):
 * a `user` sees only VMs whose `owner` is itself. Another user's VM is
 * absent from its lists and answers 404, never 403, so its existence is not
 * revealed. Every other role sees every VM.
 */
import type { Principal } from '../auth/authenticate.js';
import { seesAllVms } from '../auth/privileges.js';
import { DroverError } from '../lib/errors.js';
import { rawObject, type StoredVm } from '../store/vm-repository.js';
import { selectVm } from '../vm-ops/resolve-vm.js';
import type { ApiStore } from './context.js';
import type { IndexedVm, VmIndex } from './vm-index.js';

const FULL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function ownerOf(vm: StoredVm): string | undefined {
  const owner = rawObject(vm.raw)?.owner;
  return typeof owner === 'string' ? owner : undefined;
}

/** Whether the principal may see this VM at all. */
export function canSee(principal: Principal, owner: string | undefined): boolean {
  return seesAllVms(principal.role) || owner === principal.user;
}

export function vmNotFound(ref: string): DroverError {
  return new DroverError('NOT_FOUND', `No VM matches ${JSON.stringify(ref)}.`);
}

/**
 * For a compare-and-swap loop (vm-ops' `authorize`): refuses, as not found,
 * a record that changed owner away from the caller since it was read.
 */
export function ownerGuard(principal: Principal, ref: string): (record: Record<string, unknown>) => void {
  return (record) => {
    if (!canSee(principal, typeof record.owner === 'string' ? record.owner : undefined)) throw vmNotFound(ref);
  };
}

/** How long one etcd listing serves the name look-ups the index missed (vm-index.ts). */
const FALLBACK_MS = 1000;

export class VmAccess {
  /** The latest etcd listing for missed names: one at a time, reused for a second, so misses cannot flood etcd. */
  private fallback: { at: number; vms: Promise<StoredVm[]> } | null = null;

  constructor(
    private readonly store: ApiStore,
    private readonly index: VmIndex,
  ) {}

  private async listedFromEtcd(principal: Principal): Promise<StoredVm[]> {
    const now = Date.now();
    if (!this.fallback || now - this.fallback.at > FALLBACK_MS) {
      const vms = this.store.vms.list().then((l) => l.vms);
      this.fallback = { at: now, vms };
      vms.catch(() => (this.fallback = null));
    }
    const vms = await this.fallback.vms;
    return seesAllVms(principal.role) ? vms : vms.filter((v) => ownerOf(v) === principal.user);
  }

  /** Every VM the principal may see, sorted by name, from the watch-fed index (vm-index.ts). */
  visible(principal: Principal): readonly IndexedVm[] {
    const all = this.index.all();
    return seesAllVms(principal.role) ? all : all.filter((v) => v.owner === principal.user);
  }


  /**
   * One VM by uuid or name (CONTRACT.md section 7), among those the principal
   * may see. A uuid costs one read; a name needs the list.
   */
  async get(principal: Principal, ref: string): Promise<StoredVm> {
    const word = ref.trim();
    if (FULL_UUID.test(word)) {
      const vm = await this.store.vms.get(word);
      if (vm && canSee(principal, ownerOf(vm))) return vm;
      throw vmNotFound(ref);
    }
    try {
      // The index first; a name it does not know yet (just created through
      // another API process) is looked up in etcd before a 404.
      try {
        return selectVm(this.visible(principal).map((v) => v.vm), word);
      } catch (err) {
        if (!(err instanceof DroverError && err.code === 'NOT_FOUND')) throw err;
        return selectVm(await this.listedFromEtcd(principal), word);
      }
    } catch (err) {
      // selectVm's own sentences name other VMs' uuids when ambiguous; among
      // the caller's own VMs that reveals nothing it could not list itself.
      if (err instanceof DroverError && err.code === 'NOT_FOUND') throw vmNotFound(ref);
      throw err;
    }
  }
}
