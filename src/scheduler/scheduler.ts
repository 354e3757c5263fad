/**
 * The scheduler: places VM records that have no host, and deals with hosts
 * that die.
 *
 * Overview of responsibilities
 *  - leader election through etcd (etcd3's Campaign): any number of
 *    schedulers run (`drover scheduler`, `drover agent --scheduler`,
 *    `drover up`); exactly one leads, and another takes over within the
 *    election TTL when it dies;
 *  - the leader lists VMs, hosts and liveness keys once, then watches the
 *    whole prefix, keeping a ClusterView with per-host usage;
 *  - every record with status REQUESTED_NEW and no host gets a host and
 *    SCHEDULED, chosen by placeVm (pure), written in a transaction that
 *    compares the record's revision AND that the leader's election key still
 *    exists, so neither a race nor a deposed leader can double-place. Up to
 *    `batchSize` (16) decisions share one transaction; when it fails, its
 *    records are written one by one, so only those that changed meanwhile
 *    are decided again;
 *  - a record that fits nowhere keeps its status and gets `pending_reason`;
 *    it is tried again whenever capacity changes;
 *  - when a host's lease expires and it has not come back after
 *    failover_margin seconds, its host record becomes DEAD and its VMs
 *    KILLED with a reason, or, with spec.failover, are placed elsewhere;
 *  - pools (P/pool/*, docs/pools.md): at the start of every pass the
 *    PoolManager creates, replaces and stops the pools' VMs; the placement
 *    that follows places the new ones.
 */
import type { Campaign, Etcd3 } from 'etcd3';
import type { KeySpace } from '../contract/keys.js';
import { appendLog } from '../contract/vm-record.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { EventLog } from '../store/event-log.js';
import { KvStore, type KvEntry, type WatchHandle } from '../store/kv-store.js';
import { rawObject, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import { ClusterView } from './cluster-view.js';
import { placeVm, type PlacementPolicy } from './place-vm.js';
import { PoolManager } from './pool-manager.js';
import { AT_REST, logOf, planLostVm } from './plan-lost-vm.js';

export interface SchedulerOptions {
  client: Etcd3;
  keys: KeySpace;
  policy: PlacementPolicy;
  /** Seconds of the leader's election lease: how fast another takes over. */
  electionTtl: number;
  /** Seconds after a host's lease expired before its VMs are declared lost. */
  failoverMargin: number;
  /** Who this scheduler is, for the election value and the logs. */
  identity: string;
  logger: Logger;
  /** Records whose placement writes are in flight at once (in transactions of `batchSize`); 64 by default. */
  concurrency?: number;
  /** Records per placement transaction; 16 by default, at most 127 (etcd's --max-txn-ops is 128). */
  batchSize?: number;
  /** The store to use instead of one on `client` (tests wrap it to interfere with writes). */
  kv?: KvStore;
}

/** Defaults of SchedulerOptions.concurrency and batchSize: 4 transactions of 16 in flight. */
const CONCURRENCY = 64;
const BATCH_SIZE = 16;
/** etcd refuses a transaction with more than --max-txn-ops (128) compares; one is the guard. */
const MAX_BATCH = 127;
/** A write that failed only on the leader's key is tried again this much later. */
const GUARD_RETRY_MS = 200;

/** One decision of a pass, waiting for its write. */
interface Decision {
  vm: StoredVm;
  obj: JsonObject;
  /** A placement (host + SCHEDULED), not a pending_reason. */
  placed: boolean;
}


export class Scheduler {
  private readonly kv: KvStore;
  private readonly events: EventLog;
  private campaign: Campaign | null = null;
  private leaderKey: string | null = null;
  private view: ClusterView | null = null;
  private watch: WatchHandle | null = null;
  private stopped = false;
  private passQueued = false;
  private passRunning = false;
  private rerun = false;
  private readonly inFlight = new Set<string>();
  private readonly deadTimers = new Map<string, NodeJS.Timeout>();
  private readonly log: Logger;
  private readonly pools: PoolManager;
  /** Placements written by this scheduler (for tests and the benchmark). */
  placed = 0;
  /** Bumped by each lead() and stepDown(): an older lead() that sees another number gives up. */
  private leadGeneration = 0;

  constructor(private readonly opts: SchedulerOptions) {
    this.kv = opts.kv ?? new KvStore(opts.client);
    this.events = new EventLog(this.kv, opts.keys);
    this.log = opts.logger.child({ component: 'scheduler' });
    this.pools = new PoolManager({ kv: this.kv, events: this.events, keys: opts.keys, policy: opts.policy, logger: opts.logger, wake: () => this.queuePass() });
  }

  get isLeader(): boolean {
    return this.leaderKey !== null;
  }

  /** Starts campaigning; resolves at once (leadership comes when it comes). */
  start(): void {
    this.campaignOnce();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.deadTimers.values()) clearTimeout(t);
    const timeout = new Promise((r) => setTimeout(r, 2000).unref()); // etcd may be unreachable
    await Promise.race([this.stepDown(), timeout]);
    await Promise.race([this.campaign?.resign().catch(() => undefined), timeout]);
    this.campaign = null;
  }

  private campaignOnce(): void {
    if (this.stopped) return;
    const election = this.opts.client.namespace(`${this.opts.keys.prefix}/`).election('scheduler', this.opts.electionTtl);
    const campaign = election.campaign(this.opts.identity);
    this.campaign = campaign;
    campaign.on('elected', () => {
      if (this.campaign !== campaign) return; // an old campaign's news
      void campaign
        .getCampaignKey()
        .then((key) => this.lead(key, campaign))
        .catch((err: unknown) => this.lost(campaign, err));
    });
    campaign.on('error', (err: unknown) => this.lost(campaign, err));
  }

  /**
   * Once per campaign: the first report of its loss ends it at once (a
   * second error or a late `elected` of the same campaign then finds it is
   * no longer current), steps down, and campaigns anew (found by the chaos
   * suite: two reports used to start two campaigns and two leaders in one
   * process, one of which did nothing; docs/reliability.md).
   */
  private lost(campaign: Campaign, err: unknown): void {
    if (this.campaign !== campaign) return;
    this.campaign = null;
    this.log.warn({ err: errorMessage(err) }, 'lost the scheduler election; campaigning again');
    void campaign.resign().catch(() => undefined);
    void this.stepDown().then(() => setTimeout(() => this.campaignOnce(), 500).unref());
  }

  private async stepDown(): Promise<void> {
    this.leadGeneration++; // a lead() still reading the cluster stops where it is
    this.leaderKey = null;
    this.pools.stop();
    await this.watch?.close();
    this.watch = null;
    this.view = null;
  }

  private async lead(leaderKey: string, campaign: Campaign): Promise<void> {
    const generation = ++this.leadGeneration;
    const current = (): boolean => generation === this.leadGeneration && this.campaign === campaign;
    this.log.info({ identity: this.opts.identity }, 'elected scheduler leader');
    const { keys } = this.opts;
    const view = new ClusterView(keys, this.opts.policy.overheadMiB);
    const first = await this.kv.list(keys.alivePrefix);
    for (const e of first.entries) view.put(e);
    for (const e of (await this.kv.list(keys.hostPrefix)).entries) view.put(e);
    for (const e of (await this.kv.list(keys.vmPrefix)).entries) view.put(e);
    for (const e of (await this.kv.list(keys.poolPrefix)).entries) view.put(e);
    if (!current()) return;
    this.view = view;
    this.leaderKey = leaderKey;
    // Only what placement reads: the scheduler's etcd role reads nothing else (docs/security.md).
    const watch = await this.kv.watchPrefixes([keys.alivePrefix, keys.hostPrefix, keys.vmPrefix, keys.poolPrefix], String(BigInt(first.revision) + 1n), {
      onEvent: (e) => {
        if (this.view !== view) return;
        const key = e.type === 'put' ? e.entry.key : e.key;
        const changed = e.type === 'put' ? view.put(e.entry) : view.delete(e.key, e.modRevision);
        if (!changed) return;
        if (e.type === 'delete' && key.startsWith(keys.alivePrefix)) this.hostLeaseGone(keys.idOf(key, keys.alivePrefix));
        if (e.type === 'put' && key.startsWith(keys.alivePrefix)) this.hostBack(keys.idOf(key, keys.alivePrefix));
        this.queuePass();
      },
      onBroken: (why) => {
        if (this.view !== view) return;
        this.log.warn({ why }, 'scheduler watch broke; re-reading the cluster');
        void this.stepDown().then(() => this.lead(leaderKey, campaign)).catch((err: unknown) => this.lost(campaign, err));
      },
    });
    if (!current()) {
      await watch.close();
      return;
    }
    this.watch = watch;
    // Hosts that were already gone when this leader took over.
    for (const name of view.hosts.keys()) if (!view.alive.has(name)) this.hostLeaseGone(name);
    this.queuePass();
  }

  /** Coalesces bursts of events into one pass. */
  private queuePass(): void {
    if (this.passQueued) return;
    this.passQueued = true;
    setImmediate(() => {
      this.passQueued = false;
      void this.pass();
    });
  }

  private async pass(): Promise<void> {
    if (this.passRunning) {
      this.rerun = true; // run again when this one ends
      return;
    }
    const view = this.view;
    const leaderKey = this.leaderKey;
    if (!view || !leaderKey) return;
    this.passRunning = true;
    try {
      await this.pools.reconcile(view, leaderKey);
      const batchSize = Math.min(MAX_BATCH, Math.max(1, Math.floor(this.opts.batchSize ?? BATCH_SIZE)));
      // Transactions in flight, so that about `concurrency` records are.
      const limit = Math.max(1, Math.round((this.opts.concurrency ?? CONCURRENCY) / batchSize));
      // A counter and one waiter, not Promise.race over every pending write.
      let inFlight = 0;
      let slotFree: (() => void) | null = null;
      let allDone: (() => void) | null = null;
      let batch: Decision[] = [];
      const flush = async (): Promise<void> => {
        const items = batch;
        batch = [];
        inFlight++;
        void this.writeBatch(view, leaderKey, items).finally(() => {
          inFlight--;
          slotFree?.();
          slotFree = null;
          if (inFlight === 0) allDone?.();
        });
        if (inFlight >= limit) await new Promise<void>((r) => (slotFree = r));
      };
      for (const vm of view.vms.values()) {
        if (this.view !== view) break;
        if (!vm.parsed.ok || this.inFlight.has(vm.uuid)) continue;
        const rec = vm.parsed.value;
        if (rec.status !== 'REQUESTED_NEW' || (rec.host ?? '') !== '') continue;
        const placement = placeVm(
          { memory: rec.spec.memory, vcpus: rec.spec.vcpus, nodes: rec.spec.nodes, autostartNode: rec.spec.autostart_node },
          view.capacities(),
          this.opts.policy,
        );
        if (!placement.ok && rec.pending_reason === placement.reason) continue;
        const obj = rawObject(vm.raw) ?? {};
        if (placement.ok) {
          obj.host = placement.host;
          obj.status = 'SCHEDULED';
          delete obj.pending_reason;
          obj.log = appendLog(logOf(obj), `scheduled on ${placement.host}`, new Date());
          // Count it on the host now, so the next decision in this pass sees it.
          view.reserve(vm.uuid, placement.host, rec.spec.memory, rec.spec.vcpus);
        } else {
          obj.pending_reason = placement.reason;
        }
        this.inFlight.add(vm.uuid);
        batch.push({ vm, obj, placed: placement.ok });
        if (batch.length >= batchSize) await flush();
      }
      // A partial batch goes at once: no waiting for more work.
      if (batch.length > 0) await flush();
      if (inFlight > 0) await new Promise<void>((r) => (allDone = r));
    } finally {
      this.passRunning = false;
      if (this.rerun) {
        this.rerun = false;
        this.queuePass();
      }
    }
  }

  /**
   * Writes a pass's decisions in one transaction: the leader's key must exist
   * and every record must still be at the revision it was decided on, or
   * nothing is written. When that fails (a record changed meanwhile, or
   * leadership is gone), each record is written alone, so the others still
   * land and only the ones that lost are re-read and decided again.
   */
  private async writeBatch(view: ClusterView, leaderKey: string, items: readonly Decision[]): Promise<void> {
    try {
      if (this.view !== view || this.leaderKey !== leaderKey) {
        // Stepped down (or re-listed) since the decisions: the next leader's pass decides again.
        for (const d of items) view.release(d.vm.uuid);
        return;
      }
      const raws = items.map((d) => JSON.stringify(d.obj));
      const rev = await this.kv.guardedTxn(
        leaderKey,
        items.map((d) => ({ key: d.vm.key, expected: d.vm.modRevision })),
        items.map((d, i) => ({ put: d.vm.key, raw: raws[i]! })),
      );
      if (rev !== null) {
        items.forEach((d, i) => {
          if (d.placed) this.placed++;
          // The view holds what was written at once (its reservation becomes the record's usage);
          // the same revision coming back on the watch is then ignored.
          view.put(writtenEntry(d.vm.key, raws[i]!, rev));
        });
        return;
      }
      if (items.length > 1) {
        await Promise.all(items.map((d) => this.writeBatch(view, leaderKey, [d])));
        return;
      }
      // Someone else changed it, or leadership is gone: re-read and let the next pass decide.
      const d = items[0]!;
      view.release(d.vm.uuid);
      const fresh = await this.kv.get(d.vm.key);
      if (fresh) view.put(fresh);
      // Unchanged means the guard failed: leadership is going, and deciding again at once would spin.
      if (fresh?.modRevision === d.vm.modRevision) setTimeout(() => this.queuePass(), GUARD_RETRY_MS).unref();
      else this.queuePass();
    } catch (err) {
      this.log.warn({ vms: items.map((d) => d.vm.uuid), err: errorMessage(err) }, 'placement write failed; will retry');
      for (const d of items) view.release(d.vm.uuid);
      setTimeout(() => this.queuePass(), 500).unref();
    } finally {
      for (const d of items) this.inFlight.delete(d.vm.uuid);
    }
  }

  private hostLeaseGone(name: string): void {
    if (this.deadTimers.has(name)) return;
    const t = setTimeout(() => {
      this.deadTimers.delete(name);
      void this.declareDead(name).catch((err: unknown) => this.log.warn({ host: name, err: errorMessage(err) }, 'handling a dead host failed'));
    }, this.opts.failoverMargin * 1000);
    t.unref();
    this.deadTimers.set(name, t);
  }

  private hostBack(name: string): void {
    const t = this.deadTimers.get(name);
    if (t) clearTimeout(t);
    this.deadTimers.delete(name);
  }

  /** The host's lease expired failover_margin ago and it has not come back. */
  private async declareDead(name: string): Promise<void> {
    const view = this.view;
    const leaderKey = this.leaderKey;
    if (!view || !leaderKey || view.alive.has(name)) return;
    const host = view.hosts.get(name);
    if (host && host.record.status !== 'DEAD') {
      await this.kv.putIfGuarded(host.entry.key, JSON.stringify({ ...host.record, status: 'DEAD' }), host.entry.modRevision, leaderKey);
    }
    const lost = view.vmsOn(name).filter((v) => v.parsed.ok && !AT_REST.has(v.parsed.value.status ?? ''));
    if (lost.length === 0) return;
    await this.events.append({ ts: new Date().toISOString(), host: name, level: 'error', event: 'host.down', message: `Host ${name} is dead (its lease expired); ${lost.length} VM(s) were on it.` });
    for (const vm of lost) {
      if (!vm.parsed.ok) continue;
      const rec = vm.parsed.value;
      const { obj, text } = planLostVm(rec, rawObject(vm.raw) ?? {}, name, view.capacities(), this.opts.policy, new Date());
      // The record's change and its event in one transaction: neither without the other.
      const event = this.events.appendOp({ ts: new Date().toISOString(), host: name, vm: vm.uuid, level: 'error', event: obj.status === 'KILLED' ? 'vm.killed' : 'vm.failover', message: `VM ${rec.name}: ${text}.` });
      await this.kv.guardedTxn(leaderKey, [{ key: vm.key, expected: vm.modRevision }], [{ put: vm.key, raw: JSON.stringify(obj) }, event]);
    }
  }
}

/** A record this scheduler wrote at `revision` (its create revision is not known here, and the view does not use it). */
function writtenEntry(key: string, raw: string, revision: string): KvEntry {
  return { key, raw, modRevision: revision, createRevision: '0', lease: '0' };
}
