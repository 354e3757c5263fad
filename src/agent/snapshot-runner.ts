/**
 * Carries out the snapshot steps planSnapshotWork decides (docs/snapshots.md)
 * for a VmWorker: the hypervisor does the disk work (QMP while the VM runs,
 * qemu-img otherwise); this writes the outcome into the record, each write a
 * compare-and-swap on the record the step was planned from. A lost write
 * just means the worker re-plans: every operation is idempotent.
 *
 * Errors: a terminal one (a raw disk, a missing file, qemu's refusal) fails
 * the request with its sentence and leaves the VM as it was; a retryable one
 * (QMP connection lost, the VM still starting) is thrown for the worker's
 * backoff.
 */
import {
  mergeDiskSnapshots,
  type SnapshotOp,
  type SnapshotRequest,
  type VmSnapshot,
} from '../contract/snapshot.js';
import type { VmRecord } from '../contract/vm-record.js';
import { errorMessage, isTerminal, oneSentence } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor, SnapshotTarget } from '../hypervisor/hypervisor.js';
import type { JsonObject } from '../store/vm-repository.js';
import { acceptProblem, snapshotFailed, type SnapshotStep } from './plan-snapshot.js';
import type { EventSpec } from './plan-vm.js';

export interface SnapshotContext {
  uuid: string;
  /** The record the step was planned from. */
  record: VmRecord;
  /** Whether the VM's process runs (now). */
  up: boolean;
  hypervisor: Hypervisor;
  /** The spec with image disks as their overlay files (snapshot-disks.ts); the record's spec when absent. */
  diskSpec?: (spec: VmRecord['spec']) => Promise<VmRecord['spec']>;
  /**
   * Compare-and-swap write on the record the step was planned from, with the
   * event that reports it in the same transaction; false when it lost (the
   * worker re-plans).
   */
  write(mutate: (obj: JsonObject) => void, log: string | null, event?: EventSpec): Promise<boolean>;
  now(): Date;
  logger: Logger;
}

type Step = Extract<SnapshotStep, { kind: 'snapshot' | 'refresh-snapshots' }>;

export async function runSnapshotStep(step: Step, ctx: SnapshotContext): Promise<void> {
  const target = async (): Promise<SnapshotTarget> => ({ uuid: ctx.uuid, spec: ctx.diskSpec ? await ctx.diskSpec(ctx.record.spec) : ctx.record.spec });
  if (step.kind === 'refresh-snapshots') return refresh(target, ctx);
  try {
    if (step.phase === 'accept') await accept(step.op, step.name, await target(), ctx);
    else await run(step.op, step.name, await target(), ctx);
  } catch (err) {
    if (!isTerminal(err)) throw err;
    await fail(ctx, oneSentence(errorMessage(err)));
  }
}

/** Checks the request against the disks; accepts it (`running`) or fails it. */
async function accept(op: SnapshotOp, name: string, target: SnapshotTarget, ctx: SnapshotContext): Promise<void> {
  const disks = await ctx.hypervisor.listSnapshots(target);
  const snapshots = mergeDiskSnapshots(disks);
  const problem = acceptProblem(op, name, disks, ctx.record.name);
  if (problem) return fail(ctx, problem, snapshots);
  // A rollback of a running VM stops it first and starts it again afterwards (vmadm).
  const restart = op === 'rollback' && ctx.record.status === 'RUNNING' && ctx.up;
  await ctx.write((obj) => {
    obj.snapshots = snapshots;
    mergeRequest(obj, { state: 'running', ...(restart ? { restart: true } : {}) });
  }, null);
}

async function run(op: SnapshotOp, name: string, target: SnapshotTarget, ctx: SnapshotContext): Promise<void> {
  let deleted: string[] = [];
  if (op === 'create') await ctx.hypervisor.createSnapshot(target, name);
  else if (op === 'delete') await ctx.hypervisor.deleteSnapshot(target, name);
  else deleted = await ctx.hypervisor.rollbackSnapshot(target, name);
  const snapshots = mergeDiskSnapshots(await ctx.hypervisor.listSnapshots(target));
  const restart = restartsAfter(op, ctx);
  const vm = ctx.record.name;
  const newer = deleted.length > 0 ? `; deleted the newer snapshot${deleted.length > 1 ? 's' : ''} ${deleted.join(', ')}` : '';
  const outcome = {
    create: { log: `snapshot ${name} taken`, event: 'vm.snapshot_created' as const, message: `Snapshot ${name} of VM ${vm} was taken.` },
    delete: { log: `snapshot ${name} deleted`, event: 'vm.snapshot_deleted' as const, message: `Snapshot ${name} of VM ${vm} was deleted.` },
    rollback: {
      log: `rolled back to snapshot ${name}${newer}`,
      event: 'vm.snapshot_rolled_back' as const,
      message: `VM ${vm} was rolled back to snapshot ${name}${newer}${restart ? '; it is being started again' : ''}.`,
    },
  }[op];
  await ctx.write(
    (obj) => {
      obj.snapshots = snapshots;
      mergeRequest(obj, { state: 'done', finished_at: ctx.now().toISOString(), ...(op === 'rollback' ? { deleted } : {}) });
      delete (obj.snapshot_request as JsonObject).error;
      if (restart) startAgain(obj);
    },
    outcome.log,
    { level: 'info', event: outcome.event, message: outcome.message, email: false },
  );
}

/** Fails the request with one sentence; a RUNNING VM that a rollback had stopped is started again. */
async function fail(ctx: SnapshotContext, error: string, snapshots?: VmSnapshot[]): Promise<void> {
  const req = ctx.record.snapshot_request as SnapshotRequest;
  const step = snapshotFailed(ctx.record, req, error);
  const restart = restartsAfter(req.op, ctx);
  await ctx.write(
    (obj) => {
      if (snapshots) obj.snapshots = snapshots;
      mergeRequest(obj, { state: 'failed', error, finished_at: ctx.now().toISOString() });
      if (restart) startAgain(obj);
    },
    step.log,
    step.event,
  );
}

/** A rollback of a VM the record wants RUNNING, whose process is down: the rollback stopped it, so it starts again. */
function restartsAfter(op: string, ctx: SnapshotContext): boolean {
  return op === 'rollback' && ctx.record.status === 'RUNNING' && !ctx.up;
}

/** The normal start (with its compare-and-swap claim, STARTING) brings it up: REQUESTED_START. */
function startAgain(obj: JsonObject): void {
  obj.status = 'REQUESTED_START';
  delete obj.runtime;
  mergeRequest(obj, { restart: true });
}

/** Re-reads the disks' snapshots; writes them only when they changed (a quiet fleet costs etcd nothing). */
async function refresh(target: () => Promise<SnapshotTarget>, ctx: SnapshotContext): Promise<void> {
  let snapshots: VmSnapshot[];
  try {
    snapshots = mergeDiskSnapshots(await ctx.hypervisor.listSnapshots(await target()));
  } catch (err) {
    // No disks, an RBD disk, a missing file or overlay: nothing to report, and not worth a warning every interval.
    ctx.logger.debug({ vm: ctx.uuid, err: errorMessage(err) }, 'snapshot refresh skipped');
    return;
  }
  if (sameSnapshots(ctx.record.snapshots ?? [], snapshots)) return;
  await ctx.write((obj) => {
    obj.snapshots = snapshots;
  }, null);
}

function sameSnapshots(a: readonly VmSnapshot[], b: readonly VmSnapshot[]): boolean {
  const key = (l: readonly VmSnapshot[]): string => JSON.stringify(l.map((s) => [s.name, s.created_at ?? '', s.incomplete === true]));
  return key(a) === key(b);
}

function mergeRequest(obj: JsonObject, fields: Partial<SnapshotRequest>): void {
  const current = obj.snapshot_request;
  const base = typeof current === 'object' && current !== null && !Array.isArray(current) ? (current as JsonObject) : {};
  obj.snapshot_request = { ...base, ...fields };
}
