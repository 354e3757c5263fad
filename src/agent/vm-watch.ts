/**
 * The agent's view of `P/vm/`: list every record, hand each to the router,
 * then watch from the revision after the list, so no change between the two
 * is missed (controller-runtime's list-then-watch). A broken watch lists
 * again; a watch that lost etcd and got it back asks for a resync, since
 * whatever happened meanwhile may not all come through the watch.
 */
import type { KeySpace } from '../contract/keys.js';
import type { Logger } from '../lib/logger.js';
import type { KvStore, WatchEvent, WatchHandle } from '../store/kv-store.js';
import { toStoredVm, type StoredVm, type VmRepository } from '../store/vm-repository.js';
import { errorMessage } from '../lib/errors.js';
import type { VmRouter } from './vm-router.js';

export interface VmWatchDeps {
  kv: KvStore;
  keys: KeySpace;
  repo: VmRepository;
  router: Pick<VmRouter, 'route' | 'deleted'>;
  /** Runs `fn` until it succeeds (retry.ts, with the agent's stop flag). */
  retry: (what: string, fn: () => Promise<void>) => Promise<void>;
  /** The agent's resync, asked for after the watch reconnects. */
  resync: (reason: string) => Promise<void>;
  logger: Logger;
}

export class VmWatch {
  private handle: WatchHandle | null = null;

  constructor(private readonly deps: VmWatchDeps) {}

  /**
   * Lists, routes every record, then watches from the next revision.
   * `beforeRouting` sees the listed records before any worker acts on them
   * (the agent's start-up check scans the host's processes there, while
   * no worker can be spawning a qemu).
   */
  async listAndWatch(beforeRouting?: (vms: readonly StoredVm[]) => Promise<void>): Promise<void> {
    const { kv, keys, repo, router, logger: log } = this.deps;
    await this.handle?.close();
    this.handle = null;
    const { vms, revision } = await repo.list();
    await beforeRouting?.(vms);
    for (const vm of vms) router.route(vm, vm.modRevision);
    this.handle = await kv.watchPrefix(keys.vmPrefix, String(BigInt(revision) + 1n), {
      onEvent: (e) => this.onEvent(e),
      onBroken: (why) => {
        log.warn({ why }, 'VM watch broke; listing again');
        void this.deps.retry('list and watch VMs', () => this.listAndWatch());
      },
      onDisconnected: (why) => log.warn({ why }, 'lost the etcd watch; VMs keep running'),
      onReconnected: () => {
        log.info('etcd watch is back');
        void this.deps.resync('etcd reconnected').catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'resync failed'));
      },
    });
  }

  /** Ends the watch; etcd may be unreachable, so it waits at most 2 s for the cancel. */
  async close(): Promise<void> {
    await Promise.race([this.handle?.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.handle = null;
  }

  private onEvent(e: WatchEvent): void {
    const { keys, router } = this.deps;
    if (e.type === 'put') router.route(toStoredVm(e.entry, keys), e.entry.modRevision);
    else router.deleted(keys.idOf(e.key, keys.vmPrefix), e.modRevision);
  }
}
