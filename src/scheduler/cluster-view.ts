/**
 * The scheduler's picture of the cluster: VM records, host records and
 * which hosts hold a live lease, kept from one list plus one watch, with
 * per-host usage maintained incrementally (placing 10,000 VMs must not
 * re-add 10,000 VMs each time).
 */
import type { KeySpace } from '../contract/keys.js';
import type { KvEntry } from '../store/kv-store.js';
import { rawObject, toStoredVm, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import type { HostCapacity } from './place-vm.js';
import { PoolIndex } from './pool-index.js';

interface Usage {
  memory: number;
  vcpus: number;
  vms: number;
}

/** VMs in these states hold no capacity on their host. */
const FREE_STATES = new Set(['KILLED', 'ERROR']);

export class ClusterView {
  readonly vms = new Map<string, StoredVm>();
  readonly hosts = new Map<string, { entry: KvEntry; record: JsonObject }>();
  readonly alive = new Set<string>();
  /** Pool records and each pool's VMs (docs/pools.md). */
  readonly pools: PoolIndex;
  private readonly usage = new Map<string, Usage>();
  /** Placements written but not yet seen back on the watch: they hold capacity already. */
  private readonly reservations = new Map<string, { host: string; memory: number; vcpus: number }>();
  private readonly revisions = new Map<string, bigint>();
  /** One capacity object per host, updated in place; the array is rebuilt only when hosts come or go. */
  private readonly caps = new Map<string, HostCapacity>();
  private capList: HostCapacity[] | null = null;

  constructor(
    private readonly keys: KeySpace,
    private readonly overheadMiB: number,
  ) {
    this.pools = new PoolIndex(keys);
  }

  /** Applies a put; false when it is older than what the view holds. */
  put(entry: KvEntry): boolean {
    if (!this.newer(entry.key, entry.modRevision)) return false;
    const { keys } = this;
    if (entry.key.startsWith(keys.vmPrefix)) {
      const vm = toStoredVm(entry, keys);
      this.release(vm.uuid);
      this.account(this.vms.get(vm.uuid), -1);
      this.vms.set(vm.uuid, vm);
      this.account(vm, +1);
      this.pools.putVm(vm);
    } else if (entry.key.startsWith(keys.hostPrefix)) {
      const name = keys.idOf(entry.key, keys.hostPrefix);
      this.hosts.set(name, { entry, record: rawObject(entry.raw) ?? {} });
      this.refreshCap(name);
    } else if (entry.key.startsWith(keys.alivePrefix)) {
      const name = keys.idOf(entry.key, keys.alivePrefix);
      this.alive.add(name);
      this.refreshCap(name);
    } else if (entry.key.startsWith(keys.poolPrefix)) {
      this.pools.putPool(entry);
    }
    return true;
  }

  delete(key: string, modRevision: string): boolean {
    if (!this.newer(key, modRevision)) return false;
    const { keys } = this;
    if (key.startsWith(keys.vmPrefix)) {
      const uuid = keys.idOf(key, keys.vmPrefix);
      this.account(this.vms.get(uuid), -1);
      this.vms.delete(uuid);
      this.pools.deleteVm(uuid);
    } else if (key.startsWith(keys.hostPrefix)) {
      const name = keys.idOf(key, keys.hostPrefix);
      this.hosts.delete(name);
      this.refreshCap(name);
    } else if (key.startsWith(keys.alivePrefix)) {
      const name = keys.idOf(key, keys.alivePrefix);
      this.alive.delete(name);
      this.refreshCap(name);
    } else if (key.startsWith(keys.poolPrefix)) {
      this.pools.deletePool(key);
    }
    return true;
  }

  /** Counts a placement on its host before etcd confirms it. */
  reserve(uuid: string, host: string, memory: number, vcpus: number): void {
    this.release(uuid);
    const r = { host, memory: memory + this.overheadMiB, vcpus };
    this.reservations.set(uuid, r);
    this.add(host, r.memory, r.vcpus, 1);
  }

  release(uuid: string): void {
    const r = this.reservations.get(uuid);
    if (!r) return;
    this.reservations.delete(uuid);
    this.add(r.host, -r.memory, -r.vcpus, -1);
  }

  /** The hosts' capacities; the objects are the view's own (read them, do not keep them). */
  capacities(): HostCapacity[] {
    this.capList ??= [...this.caps.values()];
    return this.capList;
  }

  /** Rebuilds one host's capacity object from its record, liveness and usage. */
  private refreshCap(name: string): void {
    const host = this.hosts.get(name);
    if (!host) {
      if (this.caps.delete(name)) this.capList = null;
      return;
    }
    const { record } = host;
    const u = this.usage.get(name) ?? { memory: 0, vcpus: 0, vms: 0 };
    const cap: HostCapacity = {
      name,
      alive: this.alive.has(name),
      drained: record.drained === true,
      cpus: num(record.cpus),
      memory: num(record.memory),
      reservedMemory: num(record.reserved_memory),
      usedMemory: u.memory,
      usedVcpus: u.vcpus,
      vms: u.vms,
    };
    const existing = this.caps.get(name);
    if (existing) Object.assign(existing, cap);
    else {
      this.caps.set(name, cap);
      this.capList = null;
    }
  }

  vmsOn(host: string): StoredVm[] {
    return [...this.vms.values()].filter((v) => v.parsed.ok && v.parsed.value.host === host);
  }

  private newer(key: string, modRevision: string): boolean {
    const rev = BigInt(modRevision);
    const held = this.revisions.get(key);
    if (held !== undefined && rev <= held) return false;
    this.revisions.set(key, rev);
    return true;
  }

  private account(vm: StoredVm | undefined, sign: 1 | -1): void {
    if (!vm?.parsed.ok) return;
    const { host, status, spec } = vm.parsed.value;
    if (!host || FREE_STATES.has(status ?? '')) return;
    this.add(host, sign * (spec.memory + this.overheadMiB), sign * spec.vcpus, sign);
  }

  private add(host: string, memory: number, vcpus: number, vms: number): void {
    const u = this.usage.get(host) ?? { memory: 0, vcpus: 0, vms: 0 };
    u.memory += memory;
    u.vcpus += vcpus;
    u.vms += vms;
    this.usage.set(host, u);
    const cap = this.caps.get(host);
    if (cap) {
      cap.usedMemory = u.memory;
      cap.usedVcpus = u.vcpus;
      cap.vms = u.vms;
    }
  }
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}
