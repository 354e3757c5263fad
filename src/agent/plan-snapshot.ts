/**
 * The snapshot part of the reconcile decision (docs/snapshots.md), pure like
 * planVm, which asks it only when the VM is at rest: RUNNING with its
 * process up, or STOP / KILLED / ERROR with none (a request waits while the
 * VM starts, stops or migrates). Table-tested in
 * test/unit/plan-snapshot.test.ts.
 *
 * A request goes `requested` → `running` (the agent checked it against the
 * disks and accepted it) → `done` | `failed`. A rollback of a running VM is
 * vmadm's: accept (noting `restart`), stop the VM (forced: whatever the guest
 * writes after the snapshot is discarded anyway), roll the disks back with
 * qemu-img, then write `REQUESTED_START` so the normal start (with its
 * compare-and-swap claim) brings it up again.
 */
import {
  checkSnapshotRequest,
  describeSnapshotOp,
  isActiveSnapshotRequest,
  rawDiskProblem,
  type DiskSnapshots,
  type SnapshotOp,
  type SnapshotRequest,
} from '../contract/snapshot.js';
import type { VmRecord } from '../contract/vm-record.js';
import type { EventSpec, RecordPatch } from './plan-step.js';

export type SnapshotStep =
  /** Check the request against what the disks hold, then accept it (`running`) or fail it. */
  | { kind: 'snapshot'; phase: 'accept'; op: SnapshotOp; name: string }
  /** Carry out an accepted request (idempotent) and write the outcome. */
  | { kind: 'snapshot'; phase: 'run'; op: SnapshotOp; name: string }
  /** Re-read the disks' snapshots into the record (snapshot_update_interval). */
  | { kind: 'refresh-snapshots' }
  | { kind: 'stop'; force: boolean; timeoutMs: number }
  | { kind: 'write'; patch: RecordPatch; log: string; event?: EventSpec };

/**
 * The next snapshot step of a VM at rest (`up`: its process runs), or null
 * when there is nothing to do. `refreshDue`: the periodic refresh is due.
 */
export function planSnapshotWork(record: VmRecord, up: boolean, refreshDue: boolean): SnapshotStep | null {
  const req = record.snapshot_request;
  if (!isActiveSnapshotRequest(req)) return refreshDue ? { kind: 'refresh-snapshots' } : null;
  const checked = checkSnapshotRequest(req);
  if (!checked.ok) return snapshotFailed(record, req, checked.error);
  if (req.state === 'requested') return { kind: 'snapshot', phase: 'accept', op: checked.op, name: req.name };
  // Accepted. A rollback needs the VM down first.
  if (checked.op === 'rollback' && up) return { kind: 'stop', force: true, timeoutMs: 0 };
  return { kind: 'snapshot', phase: 'run', op: checked.op, name: req.name };
}

/** A RUNNING record whose process is gone because an accepted rollback stopped it (or it died meanwhile). */
export function rollbackUnderWay(record: VmRecord): boolean {
  const req = record.snapshot_request;
  return isActiveSnapshotRequest(req) && req.state === 'running' && req.op === 'rollback';
}

/** The request failed; the VM's status stays (a RUNNING one that a rollback stopped is started again by the caller's patch). */
export function snapshotFailed(record: VmRecord, req: SnapshotRequest, error: string): Extract<SnapshotStep, { kind: 'write' }> {
  return {
    kind: 'write',
    patch: { status: record.status ?? 'STOP', snapshot_request: { state: 'failed', error } },
    log: `snapshot ${describeSnapshotOp(req.op, req.name.slice(0, 80))} failed: ${error}`,
    event: { level: 'warn', event: 'vm.snapshot_failed', message: `VM ${record.name}: snapshot ${describeSnapshotOp(req.op, req.name.slice(0, 80))} failed: ${error}`, email: false },
  };
}

/**
 * Why the disks cannot do what the request asks, or null. `create`: the name
 * must be new on every disk and no disk raw. `rollback`: every disk must be
 * qcow2 and hold the snapshot. `delete`: some disk must hold it.
 */
export function acceptProblem(op: SnapshotOp, name: string, disks: readonly DiskSnapshots[], vmName: string): string | null {
  const holding = disks.filter((d) => d.snapshots.some((s) => s.name === name));
  const raw = disks.find((d) => d.format !== 'qcow2');
  switch (op) {
    case 'create':
      if (raw) return rawDiskProblem(raw.index, raw.path);
      if (holding.length > 0) return `VM ${vmName} already has a snapshot named ${name}.`;
      return null;
    case 'rollback': {
      if (raw) return rawDiskProblem(raw.index, raw.path);
      if (holding.length === 0) return `VM ${vmName} has no snapshot named ${name}.`;
      const lacking = disks.find((d) => !holding.includes(d));
      return lacking ? `Disk ${lacking.index + 1} (${lacking.path}) has no snapshot named ${name}, so the disks cannot be rolled back together.` : null;
    }
    case 'delete':
      return holding.length === 0 ? `VM ${vmName} has no snapshot named ${name}.` : null;
  }
}
