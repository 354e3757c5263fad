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
 *    SCHEDULED, chosen by placeVm (pure), written with a transaction that
 *    compares the record's revision AND that the leader's election key still
 *    exists, so neither a race nor a deposed leader can double-place;
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
import { KvStore, type WatchHandle } from '../store/kv-store.js';
import { rawObject, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import { ClusterView } from './cluster-view.js';
import { placeVm, type PlacementPolicy } from './place-vm.js';
import { PoolManager } from './pool-manager.js';

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
  /** Placement writes in flight at once. */
  concurrency?: number;
}

/** Statuses of VMs that need nothing from the scheduler when their host dies. */
const AT_REST = new Set(['STOP', 'KILLED', 'ERROR']);

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

  constructor(private readonly opts: SchedulerOptions) {
    this.kv = new KvStore(opts.client);
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
      void campaign
        .getCampaignKey()
        .then((key) => this.lead(key))
        .catch((err: unknown) => this.lost(campaign, err));
    });
    campaign.on('error', (err: unknown) => this.lost(campaign, err));
  }

  private lost(campaign: Campaign, err: unknown): void {
    if (this.campaign !== campaign) return;
    this.log.warn({ err: errorMessage(err) }, 'lost the scheduler election; campaigning again');
    void this.stepDown().then(() => setTimeout(() => this.campaignOnce(), 500).unref());
  }

  private async stepDown(): Promise<void> {
    this.leaderKey = null;
    this.pools.stop();
    await this.watch?.close();
    this.watch = null;
    this.view = null;
  }

  private async lead(leaderKey: string): Promise<void> {
    this.log.info({ identity: this.opts.identity }, 'elected scheduler leader');
    const { keys } = this.opts;
    const view = new ClusterView(keys, this.opts.policy.overheadMiB);
    const first = await this.kv.list(keys.alivePrefix);
    for (const e of first.entries) view.put(e);
    for (const e of (await this.kv.list(keys.hostPrefix)).entries) view.put(e);
    for (const e of (await this.kv.list(keys.vmPrefix)).entries) view.put(e);
    for (const e of (await this.kv.list(keys.poolPrefix)).entries) view.put(e);
    this.view = view;
    this.leaderKey = leaderKey;
    this.watch = await this.kv.watchPrefix(`${keys.prefix}/`, String(BigInt(first.revision) + 1n), {
      onEvent: (e) => {
        if (this.view !== view) return;
        const key = e.type === 'put' ? e.entry.key : e.key;
        if (key.startsWith(keys.logPrefix)) return;
        const changed = e.type === 'put' ? view.put(e.entry) : view.delete(e.key, e.modRevision);
        if (!changed) return;
        if (e.type === 'delete' && key.startsWith(keys.alivePrefix)) this.hostLeaseGone(keys.idOf(key, keys.alivePrefix));
        if (e.type === 'put' && key.startsWith(keys.alivePrefix)) this.hostBack(keys.idOf(key, keys.alivePrefix));
        this.queuePass();
      },
      onBroken: (why) => {
        this.log.warn({ why }, 'scheduler watch broke; re-reading the cluster');
        void this.stepDown().then(() => this.lead(leaderKey)).catch((err: unknown) => this.lost(this.campaign!, err));
      },
    });
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
      const limit = this.opts.concurrency ?? 64;
      // A counter and one waiter, not Promise.race over every pending write.
      let inFlight = 0;
      let slotFree: (() => void) | null = null;
      let allDone: (() => void) | null = null;
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
        inFlight++;
        void this.write(vm, obj, placement.ok).finally(() => {
          inFlight--;
          slotFree?.();
          slotFree = null;
          if (inFlight === 0) allDone?.();
        });
        if (inFlight >= limit) await new Promise<void>((r) => (slotFree = r));
      }
      if (inFlight > 0) await new Promise<void>((r) => (allDone = r));
    } finally {
      this.passRunning = false;
      if (this.rerun) {
        this.rerun = false;
        this.queuePass();
      }
    }
  }

  private async write(vm: StoredVm, obj: JsonObject, placed: boolean): Promise<void> {
    const leaderKey = this.leaderKey;
    if (!leaderKey) return;
    this.inFlight.add(vm.uuid);
    try {
      const ok = await this.kv.putIfGuarded(vm.key, JSON.stringify(obj), vm.modRevision, leaderKey);
      if (ok && placed) this.placed++;
      if (!ok) {
        // Someone else changed it, or leadership is gone: re-read and let the next pass decide.
        this.view?.release(vm.uuid);
        const fresh = await this.kv.get(vm.key);
        if (fresh) this.view?.put(fresh);
        this.queuePass();
      }
    } catch (err) {
      this.log.warn({ vm: vm.uuid, err: errorMessage(err) }, 'placement write failed; will retry');
      this.view?.release(vm.uuid);
      setTimeout(() => this.queuePass(), 500).unref();
    } finally {
      this.inFlight.delete(vm.uuid);
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
      const obj = rawObject(vm.raw) ?? {};
      let text: string;
      if (rec.spec.failover === true) {
        const candidates = rec.spec.drpnodes ?? rec.spec.nodes;
        const placement = placeVm(
          { memory: rec.spec.memory, vcpus: rec.spec.vcpus, nodes: candidates?.filter((n) => n !== name) ?? undefined },
          view.capacities().filter((c) => c.name !== name),
          this.opts.policy,
        );
        if (placement.ok) {
          obj.host = placement.host;
          obj.status = 'SCHEDULED';
          obj.error = '';
          delete obj.runtime;
          text = `failed over from ${name} (host dead) to ${placement.host}`;
        } else {
          obj.status = 'KILLED';
          obj.error = `Host ${name} died and no other host can take the VM: ${placement.reason}`;
          delete obj.runtime;
          text = `host ${name} died; failover found no host`;
        }
      } else {
        obj.status = 'KILLED';
        obj.error = `Host ${name} died (its lease expired); the VM was not restarted elsewhere because spec.failover is not set.`;
        delete obj.runtime;
        text = `host ${name} died`;
      }
      obj.log = appendLog(logOf(obj), text, new Date());
      if (await this.kv.putIfGuarded(vm.key, JSON.stringify(obj), vm.modRevision, leaderKey)) {
        await this.events.append({ ts: new Date().toISOString(), host: name, vm: vm.uuid, level: 'error', event: obj.status === 'KILLED' ? 'vm.killed' : 'vm.failover', message: `VM ${rec.name}: ${text}.` });
      }
    }
  }
}

function logOf(obj: JsonObject): string[] {
  return Array.isArray(obj.log) ? obj.log.filter((l): l is string => typeof l === 'string') : [];
}
