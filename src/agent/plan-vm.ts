/**
 * The reconcile decision (STYLE.md 3): a pure function from what the record
 * asks for and what the hypervisor shows to the ONE next step. The worker
 * executes the step, observes again and asks again, until the answer is
 * `none`. Being level-based, the same inputs always give the same step,
 * whatever event woke the worker. Unit-tested with tables in
 * test/unit/plan-vm.test.ts; the state machine is drawn in ARCHITECTURE.md.
 */
import type { EventCode, EventLevel } from '../contract/event.js';
import type { VmStatus } from '../contract/status.js';
import type { VmRecord } from '../contract/vm-record.js';
import type { VmExit, VmObservation } from '../hypervisor/hypervisor.js';
import type { StoredVm } from '../store/vm-repository.js';

export interface EventSpec {
  level: EventLevel;
  event: EventCode;
  message: string;
  /** Also send it by e-mail. */
  email: boolean;
}

/** Fields the agent writes into the record. `null` removes a field. */
export interface RecordPatch {
  status: VmStatus;
  error?: string;
  runtime?: null;
  force_stop?: null;
}

export type StartCause = 'request' | 'restart' | 'crash' | 'poweroff' | 'missing';

export type Step =
  | { kind: 'none' }
  | { kind: 'write'; patch: RecordPatch; log: string; event?: EventSpec }
  | { kind: 'start'; cause: StartCause; delayMs: number; event?: EventSpec }
  | { kind: 'stop'; force: boolean; timeoutMs: number }
  | { kind: 'destroy' };

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
 * Why a failover VM cannot fail over safely, or null: every disk must be on
 * storage all hosts share (a path under one of `shared`; rbd disks come
 * with the storage work), since another host
 * will run it from the same disk.
 */
export function failoverStorageError(record: VmRecord, shared: readonly string[]): string | null {
  if (record.spec.failover !== true) return null;
  for (const [i, d] of (record.spec.disks ?? []).entries()) {
    const path = d.path;
    if (path === undefined) return `Field spec.failover needs every disk on shared storage, but disk ${i} is an image disk, which lives on this host.`;
    if (!shared.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`))) {
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
  if (record.host !== input.host) return NONE;
  const up = observed.state !== 'absent';
  const status = record.status;

  if (WANTS_START.has(status)) {
    // Already up (adopted after an agent restart, or a start that was not yet recorded).
    if (up) return { kind: 'write', patch: { status: 'RUNNING', error: '' }, log: `running on ${input.host} as pid ${observed.handle.pid}` };
    return { kind: 'start', cause: 'request', delayMs: 0 };
  }

  switch (status) {
    case 'RUNNING':
      return up ? NONE : planUnplannedExit(input, record);
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
      return up ? stopStep(input, record) : NONE;
    case 'ERROR':
      return NONE;
    default:
      return NONE;
  }
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
