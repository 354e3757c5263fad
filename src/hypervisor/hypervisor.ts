/**
 * The hypervisor boundary (STYLE.md 1, after Nomad's DriverPlugin).
 *
 * The agent knows only this interface. `qemu/` implements it for real;
 * `fake/` implements it in memory for agent tests, and both pass the same
 * contract suite (test/contract/hypervisor.contract.ts).
 *
 * Restart safety (STYLE.md 2): `start` persists a handle (pid, process start
 * time, QMP socket) on disk under the VM's run directory; a new agent calls
 * `recover` to re-attach to a VM a previous agent left running, and never
 * restarts it.
 */
import type { DiskSnapshots } from '../contract/snapshot.js';
import type { VmSpec } from '../contract/vm-record.js';

export type Accel = 'kvm' | 'tcg';

/** What a running VM is, as persisted and reported. */
export interface VmHandle {
  uuid: string;
  name: string;
  pid: number;
  /** Process start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid apart. */
  startTime: number;
  /** ISO time the process was spawned. */
  startedAt: string;
  qmpSocket: string;
  /** Unix socket path or "127.0.0.1:5901"-style address; absent when vnc is none. */
  vnc?: string;
  serialLog: string;
  /** The serial console's unix socket (read and write); absent for a VM an older agent started. */
  serialSocket?: string;
  /** For a VM waiting for an incoming live migration: where it listens (tcp:HOST:PORT). */
  incomingUri?: string;
}

export interface StartRequest {
  uuid: string;
  name: string;
  spec: VmSpec;
}

export interface IncomingRequest extends StartRequest {
  /** The address the waiting qemu listens on for the migration stream; the port is chosen by qemu. */
  listenHost: string;
}

/** How far an outgoing migration has got, in bytes of guest RAM. */
export interface MigrationProgress {
  transferred: number;
  remaining: number;
  total: number;
}

export interface MigrateOptions {
  /** Called about every 250 ms while the migration runs. */
  onProgress?(progress: MigrationProgress): void;
  /** Cancel (the VM keeps running here) when not completed within this many ms. */
  timeoutMs: number;
}

/** The outgoing migration of a VM as the hypervisor sees it (after an agent restart, too). */
export type OutgoingMigration = 'none' | 'active' | 'completed' | 'failed';

/** The VM whose disks a snapshot operation works on (docs/snapshots.md). */
export interface SnapshotTarget {
  uuid: string;
  spec: VmSpec;
}

export interface StartHooks {
  /** Called once the process exists (before it is known to run): the agent writes STARTING. */
  onSpawned?(handle: VmHandle): void;
}

/** Why a VM's process ended. */
export type ExitReason =
  /** The agent asked for it (stop, restart, delete). */
  | 'requested'
  /** The guest powered itself off (QMP SHUTDOWN with guest: true). */
  | 'guest-poweroff'
  /** Anything else: killed by a signal, qemu crashed, stopped by someone else. */
  | 'crash';

export interface VmExit {
  uuid: string;
  reason: ExitReason;
  /** One sentence: "qemu was killed by SIGKILL.", "the guest powered off." */
  detail: string;
  at: Date;
}

export interface StopOptions {
  /** How long to wait for the guest's graceful ACPI power-down before forcing. */
  timeoutMs: number;
  /** Skip the graceful step. */
  force: boolean;
}

/** A VM process found on the host by scanning, whoever started it. */
export interface DiscoveredVm {
  pid: number;
  /** From the process's `-uuid`, when it has one. */
  uuid?: string;
  /** From `-name guest=...`, when it has one. */
  name?: string;
  /** The full argv, for the operator's report. */
  argv: string[];
  /** True when this hypervisor instance manages it (started or recovered it). */
  managed: boolean;
}

export type VmObservation =
  | { state: 'absent' }
  | { state: 'running'; handle: VmHandle }
  | { state: 'paused'; handle: VmHandle }
  /** Started for an incoming live migration; runs the guest once the migration completes. */
  | { state: 'incoming'; handle: VmHandle };

/**
 * A VM process's CPU accounting (docs/metrics.md): cheap, one /proc read, so
 * the agent's process check can take it every second.
 */
export interface VmProcessUsage {
  uuid: string;
  pid: number;
  /** ISO time the process started (the handle's `startedAt`). */
  startedAt: string;
  /**
   * ISO time the guest last booted: the process start, or the last guest
   * reset this hypervisor instance saw (a VM adopted after an agent restart
   * counts from the process start until its next reset).
   */
  bootedAt: string;
  /** User + system CPU seconds of the process since it started (/proc/PID/stat utime + stime). */
  cpuSeconds: number;
  /** When it was read, ms since the epoch. */
  at: number;
}

/** Block I/O of all of a VM's disks together, since the process started. */
export interface VmDiskCounters {
  readBytes: number;
  writeBytes: number;
  readOps: number;
  writeOps: number;
}

/** Network counters from the guest's point of view (rx: what the guest received). */
export interface VmNetCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** Everything the agent's stats interval records about one VM: raw counters, no rates. */
export interface VmSample extends VmProcessUsage {
  /** Resident memory of the process (/proc/PID/status VmRSS). */
  rssBytes: number;
  /** Summed over every disk; null when the hypervisor has no control channel to ask (qemu: no QMP connection). */
  disk: VmDiskCounters | null;
  /**
   * Summed over the VM's bridge NICs (host-side tap counters, rx and tx
   * swapped); null when it has none: user-mode networking has no host-side
   * device to count on.
   */
  net: VmNetCounters | null;
  /** The guest's memory as its balloon device reports it; null when the VM has no balloon device. */
  balloonBytes: number | null;
}

export interface Hypervisor {
  readonly accel: Accel;

  /**
   * Spawns the VM and resolves once the hypervisor reports it running.
   * Rejects with a DroverError carrying the hypervisor's own message when it
   * cannot start (terminal: a bad kernel path; retryable: a transient fault).
   * Starting a VM that already runs resolves with its handle.
   */
  start(req: StartRequest, hooks?: StartHooks): Promise<VmHandle>;

  /**
   * Stops the VM: ACPI power-down, waits up to `timeoutMs`, then kills it.
   * Resolves once the process is gone. A VM that is not running is a no-op.
   * The exit that follows is reported with reason `requested`.
   */
  stop(uuid: string, opts: StopOptions): Promise<void>;

  /**
   * Re-attaches to a VM left running by an earlier agent. Returns null when
   * no saved handle exists or the saved pid is no longer that same process.
   */
  recover(uuid: string): Promise<VmHandle | null>;

  /** Every uuid with a saved handle (recoverable or stale), for adoption at start-up. */
  listSaved(): Promise<string[]>;

  /**
   * What is known right now about the VM, without waiting. A VM whose process
   * exists but whose start has not resolved yet is reported `running`, so
   * nobody starts a second one.
   */
  inspect(uuid: string): VmObservation;

  /** Every VM process on this host, managed or foreign. */
  scan(): Promise<DiscoveredVm[]>;

  /** Removes a stopped VM's runtime directory (sockets, logs, handle, its disks). */
  destroy(uuid: string): Promise<void>;

  /**
   * Subscribes to process exits of managed VMs; returns the unsubscribe
   * function. Each process is reported once. A process that ends before its
   * start() resolves is reported by start()'s rejection instead, never here.
   */
  onExit(listener: (exit: VmExit) => void): () => void;

  /**
   * Live migration, target side: spawns the VM's process waiting for an
   * incoming migration on `listenHost` and resolves once it listens, with
   * `incomingUri` in the handle. The process shows as `incoming` until the
   * migration completes, then as `running`. Stopping it is `stop(force)`.
   * Starting one that already waits resolves with its handle.
   */
  startIncoming(req: IncomingRequest): Promise<VmHandle>;

  /**
   * Live migration, source side: sends the running VM to `uri` (another
   * host's `incomingUri`) and resolves once the target has everything; the
   * VM here is then paused for good and must be stopped by the caller.
   * Rejects with MIGRATION_FAILED when the migration fails or times out; the
   * VM then keeps running here.
   */
  migrate(uuid: string, uri: string, opts: MigrateOptions): Promise<void>;

  /** What became of the VM's outgoing migration (`none` when there was none), for an agent that restarted mid-way. */
  outgoingMigration(uuid: string): Promise<OutgoingMigration>;

  /** Cancels an outgoing migration in progress; the VM keeps running here. */
  cancelMigration(uuid: string): Promise<void>;

  /**
   * Snapshots (docs/snapshots.md): what each disk of the VM holds,
   * index-aligned with `spec.disks`; raw disks hold none. Read over the
   * control channel (QMP) while this hypervisor runs the VM, from the disk
   * files otherwise.
   */
  listSnapshots(target: SnapshotTarget): Promise<DiskSnapshots[]>;

  /**
   * Takes snapshot `name` of every disk that lacks it, all at one point in
   * time while the VM runs (one QMP transaction). Idempotent. Rejects with a
   * terminal SNAPSHOT_FAILED naming the disk when a disk is raw (or not a
   * file). Checking that the name is new is the caller's business.
   */
  createSnapshot(target: SnapshotTarget, name: string): Promise<void>;

  /** Deletes snapshot `name` from every disk that holds it. Idempotent. */
  deleteSnapshot(target: SnapshotTarget, name: string): Promise<void>;

  /**
   * Reverts every disk to snapshot `name` and deletes the snapshots newer
   * than it on each disk (vmadm's rollback); resolves with their names.
   * Only for a VM this hypervisor does not run (CONFLICT otherwise: qemu
   * cannot revert a disk under a running guest). Rejects with a terminal
   * SNAPSHOT_FAILED when a disk is raw or lacks the snapshot.
   */
  rollbackSnapshot(target: SnapshotTarget, name: string): Promise<string[]>;

  /**
   * CPU accounting of a VM this hypervisor runs, from one /proc read (no
   * control-channel round trip); null when it does not run it.
   */
  processUsage(uuid: string): Promise<VmProcessUsage | null>;

  /**
   * Raw counters of a VM this hypervisor runs (docs/metrics.md): /proc,
   * block stats over the VM's existing control connection (never a new
   * one), tap counters, the balloon when there is one. Spawns nothing.
   * Null when it does not run the VM.
   */
  sample(uuid: string): Promise<VmSample | null>;

  /** Lets go of every VM (closes QMP connections) without stopping any. */
  detachAll(): Promise<void>;
}
