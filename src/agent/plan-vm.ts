/**
 * The reconcile decision (STYLE.md 3): a pure function from what the record
 * asks for and what the hypervisor shows to the ONE next step. The worker
 * executes the step, observes again and asks again, until the answer is
 * `none`. Being level-based, the same inputs always give the same step,
 * whatever event woke the worker. Unit-tested with tables in
 * test/unit/plan-vm.test.ts; the state machine is drawn in ARCHITECTURE.md.
 */
import type { EventCode } from '../contract/event.js';
import type { VmStatus } from '../contract/status.js';
import type { VmRecord } from '../contract/vm-record.js';
import type { VmExit, VmObservation } from '../hypervisor/hypervisor.js';
import type { StoredVm } from '../store/vm-repository.js';
import { planSnapshotWork, rollbackUnderWay, type SnapshotStep } from './plan-snapshot.js';
import type { EventSpec, RecordPatch } from './plan-step.js';

export type { EventSpec, RecordPatch } from './plan-step.js';

export type StartCause = 'request' | 'restart' | 'crash' | 'poweroff' | 'missing';

export type Step =
  | { kind: 'none' }
  | { kind: 'write'; patch: RecordPatch; log: string; event?: EventSpec }
  | { kind: 'start'; cause: StartCause; delayMs: number; event?: EventSpec }
  | { kind: 'stop'; force: boolean; timeoutMs: number }
  | { kind: 'destroy' }
  /** Live migration, target side: spawn qemu waiting for the VM, then write `migration.state: ready`. */
  | { kind: 'incoming' }
  /** Live migration, source side: wait for the target, send the VM, move the record (or resume that after a restart). */
  | { kind: 'migrate' }
  /** Snapshots (plan-snapshot.ts): accept or carry out the record's snapshot_request; refresh `snapshots`. */
  | Extract<SnapshotStep, { kind: 'snapshot' | 'refresh-snapshots' }>;

export interface PlanLimits {
  crashLimit: number;
  crashWindowSeconds: number;
  stopTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
}

export interface PlanInput {
  host: string;
  /** The newest record; null when the key was deleted. */
  vm: StoredVm | null;
  observed: VmObservation;
  /** An exit of this VM's process not yet accounted for. */
  exit: VmExit | null;
  /** Unplanned exits (crash, power-off restarts) within the crash window, before `exit`. */
  recentExits: number;
  limits: PlanLimits;
  /** Path prefixes of storage all hosts share (config shared_storage); none when absent. */
  sharedStorage?: readonly string[];
  /** The periodic re-read of the disks' snapshots is due (snapshot_update_interval). */
  snapshotRefreshDue?: boolean;
}

const NONE: Step = { kind: 'none' };

/** Statuses that ask the agent to bring the VM up. */
const WANTS_START = new Set<VmStatus | undefined>([undefined, 'REQUESTED_NEW', 'SCHEDULED', 'REQUESTED_START', 'STARTING']);

/** Delay before the n-th restart in a row: min doubling to max. */
export function restartDelayMs(previousExits: number, limits: PlanLimits): number {
  return Math.min(limits.backoffMaxMs, limits.backoffMinMs * 2 ** Math.max(0, previousExits));
}

/** Whether this record is the agent's to act on. */
export function isDesignatedTo(vm: StoredVm, host: string): boolean {
  if (vm.parsed.ok) return vm.parsed.value.host === host;
  return designatedHostOfRaw(vm.raw) === host;
}

/** The host of a record that failed validation, if its JSON says one. */
export function designatedHostOfRaw(raw: string): string | undefined {
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v === 'object' && v !== null && typeof (v as { host?: unknown }).host === 'string') {
      return (v as { host: string }).host;
    }
  } catch {
    // not JSON: no host to read
  }
  return undefined;
}

/**
 * Why a VM cannot be live-migrated, or null: every disk must be a path on
 * storage all hosts share, since the target opens the same disks.
 */
export function migrationStorageError(record: VmRecord, shared: readonly string[]): string | null {
  for (const [i, d] of (record.spec.disks ?? []).entries()) {
    if (d.rbd !== undefined) continue; // in the Ceph cluster every host reaches
    const path = d.path;
    if (path === undefined) return `disk ${i} is an image disk, which lives on this host only`;
    if (!underShared(path, shared)) return `disk ${i} (${path}) is not under any shared_storage path of this host`;
  }
  return null;
}

function underShared(path: string, shared: readonly string[]): boolean {
  return shared.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`));
}

/**
 * Why a failover VM cannot fail over safely, or null: every disk must be on
 * storage all hosts share (a path under one of `shared`, or an rbd disk),
 * since another host
 * will run it from the same disk.
 */
export function failoverStorageError(record: VmRecord, shared: readonly string[]): string | null {
  if (record.spec.failover !== true) return null;
  for (const [i, d] of (record.spec.disks ?? []).entries()) {
    if (d.rbd !== undefined) continue; // in the Ceph cluster every host reaches
    const path = d.path;
    if (path === undefined) return `Field spec.failover needs every disk on shared storage, but disk ${i} is an image disk, which lives on this host.`;
    if (!underShared(path, shared)) {
      return `Field spec.failover needs every disk on shared storage, but disk ${i} (${path}) is not under any shared_storage path of this host.`;
    }
  }
  return null;
}

export function planVm(input: PlanInput): Step {
  const { vm, observed } = input;
  if (vm === null) return NONE; // deleted: a process left behind is the periodic check's (vm.foreign)
  if (!vm.parsed.ok) return planInvalid(vm, vm.parsed.error);
  const record = vm.parsed.value;
  if (record.host !== input.host) return planElsewhere(input, record);
  const up = observed.state !== 'absent';
  const status = record.status;

  if (observed.state === 'incoming' && !(record.migration?.target === input.host && record.migration.state === 'completed')) {
    // A qemu waiting for a migration that is not coming (the VM was placed
    // here some other way, e.g. by failover): it never ran the guest, and a
    // normal start must not take it for the VM.
    return { kind: 'stop', force: true, timeoutMs: 0 };
  }

  if (WANTS_START.has(status)) {
    // Already up (adopted after an agent restart, or a start that was not yet recorded).
    if (up) {
      const write: Step = { kind: 'write', patch: { status: 'RUNNING', error: '' }, log: `running on ${input.host} as pid ${observed.handle.pid}` };
      // STARTING: this agent spawned qemu but its RUNNING write (and so the
      // start's event) never landed: etcd failed, or the agent died, just
      // then. The event is due now, or the start would be missing from P/log.
      return status === 'STARTING'
        ? { ...write, event: { level: 'info', event: 'vm.started', message: `VM ${record.name} started on ${input.host} as pid ${observed.handle.pid}.`, email: false } }
        : write;
    }
    return { kind: 'start', cause: 'request', delayMs: 0 };
  }

  switch (status) {
    case 'RUNNING':
      if (up) return snapshotWork(input, record, true);
      // A rollback stopped it: the rollback goes on, then it is started again.
      return rollbackUnderWay(record) ? snapshotWork(input, record, false) : planUnplannedExit(input, record);
    case 'TO_STOP':
      return up
        ? { kind: 'write', patch: { status: 'STOPPING' }, log: record.force_stop ? 'forced stop requested' : 'stop requested' }
        : stopped(input, record, 'stopped');
    case 'STOPPING':
      return up ? stopStep(input, record) : stopped(input, record, 'stopped');
    case 'REQUESTED_RESTART':
      return up ? stopStep(input, record) : { kind: 'start', cause: 'restart', delayMs: 0 };
    case 'REQUESTED_DELETE':
      return up ? stopStep(input, record) : { kind: 'destroy' };
    case 'STOP':
    case 'KILLED':
      // Level-based: the record wants it down, so a process found running goes.
      return up ? stopStep(input, record) : snapshotWork(input, record, false);
    case 'REQUESTED_MIGRATE':
      return planMigrationRequest(input, record, up);
    case 'MIGRATING':
      // Paused counts as up: after a completed migration the source is paused for good.
      return up ? { kind: 'migrate' } : migrationFailed(input, record, 'the VM stopped running during the migration');
    case 'ERROR':
      return up ? NONE : snapshotWork(input, record, false);
    default:
      return NONE;
  }
}

/** Snapshot work for a VM at rest (plan-snapshot.ts), or none. */
function snapshotWork(input: PlanInput, record: VmRecord, up: boolean): Step {
  return planSnapshotWork(record, up, input.snapshotRefreshDue === true) ?? NONE;
}

/** A record designated to another host: this host may be a migration's target, or the source of one that completed. */
function planElsewhere(input: PlanInput, record: VmRecord): Step {
  const m = record.migration;
  const here = input.observed.state !== 'absent';
  if (m?.target === input.host) {
    if (record.status === 'MIGRATING' && m.state === 'requested') return { kind: 'incoming' };
    if (record.status === 'MIGRATING' && (m.state === 'ready' || m.state === 'sending')) return NONE; // the source sends
    // Failed, cancelled or superseded (the source died and the VM was placed
    // elsewhere): a qemu here, waiting or even running a fully received
    // guest, must go, since the record does not say the VM runs here.
    return here ? { kind: 'stop', force: true, timeoutMs: 0 } : NONE;
  }
  // The source of a completed migration: its qemu is paused for good (the
  // agent restarted between moving the record and stopping it).
  if (m?.source === input.host && m.state === 'completed' && here) return { kind: 'stop', force: true, timeoutMs: 0 };
  return NONE;
}

function planMigrationRequest(input: PlanInput, record: VmRecord, up: boolean): Step {
  const target = record.migration?.target;
  if (!up) return migrationFailed(input, record, 'the VM is not running here, so there is nothing to migrate live');
  if (target === undefined) return migrationFailed(input, record, 'the record has no migration.target');
  if (target === input.host) return migrationFailed(input, record, `the VM already runs on ${target}`);
  const storage = migrationStorageError(record, input.sharedStorage ?? []);
  if (storage) return migrationFailed(input, record, `it needs every disk on shared storage, but ${storage}`);
  return {
    kind: 'write',
    patch: { status: 'MIGRATING', error: '', migration: { source: input.host, state: 'requested' } },
    log: `migrating to ${target}`,
    event: { level: 'info', event: 'vm.migrating', message: `VM ${record.name} is migrating from ${input.host} to ${target}.`, email: false },
  };
}

/** The migration is over without moving the VM: it keeps running here (or, if it is not running, the RUNNING rules restart it). */
export function migrationFailed(input: Pick<PlanInput, 'host'>, record: VmRecord, why: string): Extract<Step, { kind: 'write' }> {
  const target = record.migration?.target ?? '?';
  return {
    kind: 'write',
    patch: { status: 'RUNNING', error: '', migration: { state: 'failed', error: why } },
    log: `migration to ${target} failed: ${why}`,
    event: { level: 'warn', event: 'vm.migration_failed', message: `VM ${record.name} stays on ${input.host}: its migration to ${target} failed (${why}).`, email: false },
  };
}

function planInvalid(vm: StoredVm, error: string): Step {
  // Once it says ERROR with a reason, leave it for a human: rewriting the
  // reason each time would loop (a quarantined record is itself invalid).
  const current = rawStatusAndError(vm.raw);
  if (current.status === 'ERROR' && typeof current.error === 'string' && current.error !== '') return NONE;
  return {
    kind: 'write',
    patch: { status: 'ERROR', error },
    log: `invalid record: ${error}`,
    event: { level: 'error', event: 'vm.error', message: `VM record ${vm.uuid} is invalid: ${error}`, email: false },
  };
}

function rawStatusAndError(raw: string): { status?: unknown; error?: unknown } {
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === 'object' && v !== null ? (v as { status?: unknown; error?: unknown }) : {};
  } catch {
    return {};
  }
}

function stopStep(input: PlanInput, record: VmRecord): Step {
  const timeoutMs = record.spec.stop_timeout !== undefined ? record.spec.stop_timeout * 1000 : input.limits.stopTimeoutMs;
  return { kind: 'stop', force: record.force_stop === true, timeoutMs };
}

function stopped(input: PlanInput, _record: VmRecord, text: string): Step {
  return {
    kind: 'write',
    patch: { status: 'STOP', error: '', runtime: null, force_stop: null },
    log: `${text} on ${input.host}`,
    event: { level: 'info', event: 'vm.stopped', message: `VM ${_record.name} stopped on ${input.host}.`, email: false },
  };
}

/** The record says RUNNING but no process runs: an exit we saw, or one we missed. */
function planUnplannedExit(input: PlanInput, record: VmRecord): Step {
  const { exit, limits } = input;
  const policy = record.spec.restart;
  const name = record.name;
  if (exit?.reason === 'requested') return stopped(input, record, 'stopped');

  if (exit?.reason === 'guest-poweroff' && policy !== 'always') {
    return {
      kind: 'write',
      patch: { status: 'STOP', error: '', runtime: null, force_stop: null },
      log: 'guest powered off',
      event: { level: 'info', event: 'vm.poweroff', message: `VM ${name} powered itself off; restart policy is ${policy}.`, email: false },
    };
  }

  const what =
    exit === null
      ? `VM ${name} was not running on ${input.host} although its record says RUNNING.`
      : exit.reason === 'guest-poweroff'
        ? `VM ${name} powered itself off.`
        : `VM ${name} crashed on ${input.host}: ${exit.detail}`;
  const event: EventCode = exit === null ? 'vm.missing' : exit.reason === 'guest-poweroff' ? 'vm.poweroff' : 'vm.crashed';

  if (policy === 'never') {
    return {
      kind: 'write',
      patch: { status: 'KILLED', error: '', runtime: null },
      log: `${exit === null ? 'found not running' : exit.reason === 'crash' ? 'crashed' : 'powered off'}; restart policy is never`,
      event: { level: 'error', event, message: `${what} Restart policy is never, so it stays down.`, email: true },
    };
  }

  const exits = input.recentExits + 1;
  if (exits >= limits.crashLimit) {
    return {
      kind: 'write',
      patch: { status: 'KILLED', error: '', runtime: null },
      log: `went down ${exits} times within ${limits.crashWindowSeconds} s; not restarting`,
      event: {
        level: 'error',
        event: 'vm.killed',
        message: `${what} It went down ${exits} times within ${limits.crashWindowSeconds} s, so drover stopped restarting it.`,
        email: true,
      },
    };
  }
  const cause: StartCause = exit === null ? 'missing' : exit.reason === 'guest-poweroff' ? 'poweroff' : 'crash';
  return {
    kind: 'start',
    cause,
    delayMs: restartDelayMs(input.recentExits, limits),
    event: { level: exit?.reason === 'guest-poweroff' ? 'info' : 'error', event, message: `${what} Restarting it.`, email: cause !== 'poweroff' },
  };
}
