/**
 * The API's view of every VM record, kept by an etcd watch: listed once at
 * start-up, then changed by each put and delete in revision order (the same
 * list-then-watch as the agent). Listing 10,000 records from etcd and
 * parsing them on every `GET /vms` costs ~100 ms; the index answers in a few.
 * It is rebuilt from etcd whenever the API starts or the watch breaks, so the
 * API stays stateless: nothing here that etcd does not hold.
 *
 * Consistency: `GET /vms/{uuid}` and every write read etcd itself. A list is
 * at most one watch delivery behind etcd (milliseconds); a write through this
 * process waits (`caughtUp`) until the index holds it before answering, so a
 * client sees its own writes. A name the index does not know is looked up in
 * etcd before a 404.
 */
import type { KeySpace } from '../contract/keys.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { KvStore, WatchHandle } from '../store/kv-store.js';
import { toStoredVm, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import { vmObject } from '../vm-ops/vm-view.js';

const CATCH_UP_MS = 2000;

/** A VM with its record parsed once, when it was written, not on every request. */
export interface IndexedVm {
  vm: StoredVm;
  /** The record as shown (vm-ops/vm-view.ts `vmObject`). */
  obj: JsonObject;
  name: string;
  owner: string | undefined;
}

function indexed(vm: StoredVm): IndexedVm {
  const obj = vmObject(vm);
  return { vm, obj, name: typeof obj.name === 'string' ? obj.name : '', owner: typeof obj.owner === 'string' ? obj.owner : undefined };
}

export class VmIndex {
  private readonly vms = new Map<string, IndexedVm>();
  /** name -> uuids with that name (names are unique by the create check, not by etcd). */
  private readonly names = new Map<string, Set<string>>();
  private revision = 0n;
  private byName: IndexedVm[] | null = null;
  private watch: WatchHandle | null = null;
  private waiters = new Set<{ rev: bigint; done: () => void }>();
  private stopped = false;

  constructor(
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const { entries, revision } = await this.kv.list(this.keys.vmPrefix);
    this.vms.clear();
    this.names.clear();
    for (const e of entries) this.put(indexed(toStoredVm(e, this.keys)));
    this.byName = null;
    this.advance(BigInt(revision));
    this.watch = await this.kv.watchPrefix(this.keys.vmPrefix, (BigInt(revision) + 1n).toString(), {
      onEvent: (w) => {
        if (w.type === 'put') {
          this.put(indexed(toStoredVm(w.entry, this.keys)));
          this.advanceTo(w.entry.modRevision);
        } else {
          this.remove(this.keys.idOf(w.key, this.keys.vmPrefix));
          this.advanceTo(w.modRevision);
        }
        this.byName = null;
      },
      onBroken: (reason) => {
        this.logger.warn({ reason }, 'the VM index watch broke; listing again');
        void this.restart();
      },
    });
  }

  private async restart(): Promise<void> {
    await this.watch?.close().catch(() => undefined);
    this.watch = null;
    for (let delay = 200; !this.stopped; delay = Math.min(delay * 2, 5000)) {
      try {
        await this.start();
        return;
      } catch (err) {
        this.logger.warn({ err: errorMessage(err) }, 'could not list VMs for the index; trying again');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private put(v: IndexedVm): void {
    this.remove(v.vm.uuid);
    this.vms.set(v.vm.uuid, v);
    let same = this.names.get(v.name);
    if (!same) this.names.set(v.name, (same = new Set()));
    same.add(v.vm.uuid);
  }

  private remove(uuid: string): void {
    const old = this.vms.get(uuid);
    if (!old) return;
    this.vms.delete(uuid);
    const same = this.names.get(old.name);
    same?.delete(uuid);
    if (same?.size === 0) this.names.delete(old.name);
  }

  private advanceTo(rev: string): void {
    const r = BigInt(rev);
    if (r > this.revision) this.advance(r);
  }

  private advance(rev: bigint): void {
    this.revision = rev;
    for (const w of this.waiters) {
      if (w.rev <= rev) {
        this.waiters.delete(w);
        w.done();
      }
    }
  }

  /** Resolves once the index holds revision `rev` (a write this process made), or after a short bound. */
  caughtUp(rev: string | null | undefined): Promise<void> {
    if (rev === null || rev === undefined || BigInt(rev) <= this.revision) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = { rev: BigInt(rev), done: () => (clearTimeout(timer), resolve()) };
      const timer = setTimeout(() => (this.waiters.delete(waiter), resolve()), CATCH_UP_MS);
      this.waiters.add(waiter);
    });
  }

  /** Every VM, sorted by name then uuid (the sort is kept until the next change). */
  all(): readonly IndexedVm[] {
    this.byName ??= [...this.vms.values()].sort((a, b) => {
      const ua = a.vm.uuid;
      const ub = b.vm.uuid;
      return a.name < b.name ? -1 : a.name > b.name ? 1 : ua < ub ? -1 : ua > ub ? 1 : 0;
    });
    return this.byName;
  }

  /** The uuid of a VM with this name, if any. */
  uuidNamed(name: string): string | undefined {
    const same = this.names.get(name);
    return same ? same.values().next().value : undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.waiters) w.done();
    this.waiters.clear();
    await this.watch?.close();
  }
}
