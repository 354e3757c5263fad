/**
 * The agent's presence in the cluster (CONTRACT.md section 4).
 *
 * Liveness is an etcd lease: `P/alive/<name>` lives under it, so when the
 * agent is gone for longer than the TTL the key vanishes and readers see the
 * host DEAD. The name is claimed with a transaction: free, or held by this
 * same host (same hostid: the previous incarnation of this agent, which died
 * or is restarting). Any other holder means a live agent elsewhere has the
 * name, and this one refuses to start. `P/host/<name>` itself is a plain
 * record (no lease) that the agent refreshes every heartbeat with CAS.
 */
import { EventEmitter } from 'node:events';
import type { Etcd3, Lease } from 'etcd3';
import type { KeySpace } from '../contract/keys.js';
import { aliveRecordSchema, type HostRecord, type ConsoleEndpoint } from '../contract/host-record.js';
import { DroverError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { KvStore } from '../store/kv-store.js';
import { rawObject, type StoredVm } from '../store/vm-repository.js';

export interface HostFacts {
  name: string;
  hostid: string;
  ip: string;
  cpus: number;
  memory: number;
  version: string;
  accel: string;
}

export interface HostUsage {
  /** MiB kept back for the host (config reserved_memory, re-read on reload). */
  reservedMemory: number;
  /** MiB of memory the VMs designated here are meant to use. */
  vmMemory: number;
  vms: number;
  /** Where this agent serves consoles to API processes, when it does. */
  console?: ConsoleEndpoint;
}

/** Memory and count of the VMs designated to `host` that are meant to run (not STOP, KILLED or ERROR). */
export function designatedUsage(records: Iterable<StoredVm | null | undefined>, host: string): { vmMemory: number; vms: number } {
  let vmMemory = 0;
  let vms = 0;
  for (const rec of records) {
    if (!rec?.parsed.ok || rec.parsed.value.host !== host) continue;
    const status = rec.parsed.value.status;
    if (status === 'STOP' || status === 'KILLED' || status === 'ERROR') continue;
    vmMemory += rec.parsed.value.spec.memory;
    vms++;
  }
  return { vmMemory, vms };
}

/** How long after the last confirmation of a lease its holder must consider itself fenced. */
export function fenceAfterMs(ttlMs: number): number {
  return (ttlMs * 2) / 3;
}

export class HostRegistration extends EventEmitter {
  private lease: Lease | null = null;
  private leaseId: string | null = null;
  /** When etcd last confirmed the lease (grant or keepalive), ms since the epoch. */
  private renewedAt = 0;

  constructor(
    private readonly client: Etcd3,
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
    private readonly facts: HostFacts,
    private readonly ttlSeconds: number,
    private readonly logger: Logger,
  ) {
    super();
  }

  /**
   * Grants a lease and claims the name. Throws HOST_NAME_TAKEN (terminal)
   * when another live host holds it; retryable errors when etcd is away.
   * Emits 'lost' when the lease is lost later (etcd unreachable past the TTL).
   */
  async claim(): Promise<void> {
    const lease = this.client.lease(this.ttlSeconds, { autoKeepAlive: true });
    let leaseId: string;
    try {
      leaseId = await lease.grant();
    } catch (err) {
      lease.release();
      throw new DroverError('ETCD_UNAVAILABLE', `Could not get a lease from etcd: ${errorMessage(err)}.`, true, { cause: err });
    }
    const key = this.keys.alive(this.facts.name);
    const value = JSON.stringify({ hostid: this.facts.hostid, pid: process.pid, since: new Date().toISOString() });
    try {
      let claimed = await this.kv.putIf(key, value, 'absent', leaseId);
      if (!claimed) {
        const holder = await this.kv.get(key);
        const parsed = holder ? aliveRecordSchema.safeParse(rawObject(holder.raw)) : null;
        if (holder && parsed?.success && parsed.data.hostid !== this.facts.hostid) {
          throw new DroverError(
            'HOST_NAME_TAKEN',
            `Host name ${this.facts.name} is held by a live agent with hostid ${parsed.data.hostid} (pid ${parsed.data.pid}); stop it or choose another --name.`,
          );
        }
        // Our own earlier incarnation (or the key just expired): take it over.
        claimed = await this.kv.putIf(key, value, holder ? holder.modRevision : 'absent', leaseId);
        if (!claimed) throw new DroverError('CONFLICT', `Host name ${this.facts.name} changed hands while claiming it; retrying.`, true);
      }
    } catch (err) {
      await lease.revoke().catch(() => undefined);
      throw err;
    }
    this.renewedAt = Date.now();
    lease.on('keepaliveSucceeded', () => {
      if (this.lease === lease) this.renewedAt = Date.now();
    });
    lease.on('lost', (err) => {
      if (this.lease !== lease) return;
      this.lease = null;
      this.logger.warn({ err: errorMessage(err) }, 'lost the liveness lease');
      this.emit('lost');
    });
    this.lease = lease;
    this.leaseId = leaseId;
  }

  /**
   * Puts `value` at `key` under the liveness lease, so it vanishes with the
   * host (the stats summary, docs/metrics.md). False, writing nothing, while
   * no lease is held.
   */
  async putUnderLease(key: string, value: string): Promise<boolean> {
    const id = this.lease ? this.leaseId : null;
    if (id === null) return false;
    await this.kv.put(key, value, id);
    return true;
  }

  /** When etcd last confirmed the lease (ms since the epoch); 0 before the first claim. */
  get renewedAtMs(): number {
    return this.lease ? this.renewedAt : 0;
  }

  get claimed(): boolean {
    return this.lease !== null;
  }

  /**
   * True while etcd confirmed the lease within two thirds of its TTL (etcd3
   * sends a keepalive every third of it, so a healthy lease is never older
   * than about one third plus a round trip). etcd expires
   * the lease at the earliest one TTL after the last confirmation, so a host
   * that is not fresh may already be about to be declared dead: it must not
   * start VMs, and it fences (kills) its failover VMs (sanlock's ordering).
   */
  fresh(now = Date.now()): boolean {
    return this.lease !== null && now - this.renewedAt < fenceAfterMs(this.ttlSeconds * 1000);
  }

  /** Whether a lease was held at some point and is now stale (the trigger for self-fencing). */
  stale(now = Date.now()): boolean {
    return this.renewedAt > 0 && !this.fresh(now);
  }

  /** The address published in the host record. */
  get ip(): string {
    return this.facts.ip;
  }

  /** Writes the host record (CAS on its revision; fields others added are kept). */
  async heartbeat(usage: HostUsage): Promise<void> {
    const key = this.keys.host(this.facts.name);
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.kv.get(key);
      const base = current ? (rawObject(current.raw) ?? {}) : {};
      const record: HostRecord = {
        ...base,
        name: this.facts.name,
        hostid: this.facts.hostid,
        ip: this.facts.ip,
        status: this.lease ? 'ALIVE' : 'DEAD',
        cpus: this.facts.cpus,
        memory: this.facts.memory,
        reserved_memory: usage.reservedMemory,
        free_memory: Math.max(0, this.facts.memory - usage.reservedMemory - usage.vmMemory),
        version: this.facts.version,
        heartbeat_at: new Date().toISOString(),
        accel: this.facts.accel,
        vms: usage.vms,
        ...(usage.console ? { console: usage.console } : {}),
      };
      if (!usage.console) delete record.console;
      if (await this.kv.putIf(key, JSON.stringify(record), current ? current.modRevision : 'absent')) return;
    }
    throw new DroverError('CONFLICT', `Host record ${key} kept changing; will retry at the next heartbeat.`, true);
  }

  /**
   * Stops keeping the lease alive without revoking it: the name stays held
   * for one TTL, so a restarting agent (same hostid) takes over seamlessly.
   */
  release(): void {
    this.lease?.release();
    this.lease = null;
  }
}
