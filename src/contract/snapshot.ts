/**
 * VM snapshots in the VM record (docs/snapshots.md), after SmartOS vmadm:
 * `snapshots` lists what the VM's disks hold, `snapshot_request` is the one
 * operation asked for (by the CLI) and its outcome (written by the agent).
 *
 * The request's `op` and `name` are plain strings in the schema on purpose:
 * a hostile or mistyped request must fail with a sentence in
 * `snapshot_request.error`, not make the whole record invalid (which would
 * put a running VM into ERROR). `checkSnapshotRequest` is that check.
 */
import { z } from 'zod';

/**
 * Snapshot names: vmadm's rule (at most 64 characters: letters, digits and
 * `-_.:`), starting with a letter or digit (never read as an option), and not
 * all digits: qemu looks a snapshot up by its numeric id before its name
 * (`qemu-img snapshot -a 2` applies the snapshot with id 2, whatever its
 * name), so a numeric name could select another snapshot.
 */
export const SNAPSHOT_NAME_RE = /^(?![0-9]+$)[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

export const SNAPSHOT_OPS = ['create', 'rollback', 'delete'] as const;
export type SnapshotOp = (typeof SNAPSHOT_OPS)[number];

/**
 * `requested` (CLI) → `running` (the agent accepted it) → `done` | `failed`.
 * `requested` and `running` are active: no new request is taken meanwhile.
 */
export const SNAPSHOT_REQUEST_STATES = ['requested', 'running', 'done', 'failed'] as const;
export type SnapshotRequestState = (typeof SNAPSHOT_REQUEST_STATES)[number];

export const snapshotRequestSchema = z.looseObject({
  op: z.string().max(64),
  name: z.string().max(1024),
  /** Chosen by the CLI; lets it tell its own request's outcome from a later one. */
  id: z.string().max(64).optional(),
  state: z.enum(SNAPSHOT_REQUEST_STATES).default('requested'),
  requested_at: z.string().optional(),
  /** Rollback of a running VM: the agent stopped it and starts it again afterwards. */
  restart: z.boolean().optional(),
  /** Rollback: the snapshots newer than the target that were deleted. */
  deleted: z.array(z.string()).optional(),
  error: z.string().optional(),
  finished_at: z.string().optional(),
});
export type SnapshotRequest = z.infer<typeof snapshotRequestSchema>;

export const vmSnapshotSchema = z.looseObject({
  name: z.string(),
  /** ISO time the snapshot was taken (the first disk's). */
  created_at: z.string().optional(),
  /** Present (true) when only some of the VM's qcow2 disks hold it: an interrupted operation, or one made by hand. */
  incomplete: z.boolean().optional(),
});
export type VmSnapshot = z.infer<typeof vmSnapshotSchema>;

/** Why a snapshot name is refused, or null when it is fine. */
export function snapshotNameProblem(name: string): string | null {
  if (SNAPSHOT_NAME_RE.test(name)) return null;
  const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
  if (/^[0-9]+$/.test(name)) return `Snapshot name ${shown} is all digits, which qemu would read as a snapshot id; add a letter.`;
  return `Snapshot name ${shown} is invalid: use 1 to 64 letters, digits and "-_.:", starting with a letter or digit.`;
}

export function isActiveSnapshotRequest(req: SnapshotRequest | undefined): req is SnapshotRequest {
  return req !== undefined && (req.state === 'requested' || req.state === 'running');
}

/** The request's op when it and its name are valid, else the sentence the agent writes into `error`. */
export function checkSnapshotRequest(req: SnapshotRequest): { ok: true; op: SnapshotOp } | { ok: false; error: string } {
  if (!(SNAPSHOT_OPS as readonly string[]).includes(req.op)) {
    return { ok: false, error: `Snapshot operation ${JSON.stringify(req.op.slice(0, 64))} is unknown; use create, rollback or delete.` };
  }
  const problem = snapshotNameProblem(req.name);
  return problem ? { ok: false, error: problem } : { ok: true, op: req.op as SnapshotOp };
}

/** One snapshot as one disk holds it. */
export interface DiskSnapshot {
  name: string;
  /** qemu's numeric id within the disk. */
  id: string;
  /** Epoch ms the snapshot was taken. */
  createdMs: number;
}

/** What one disk of a VM holds; `format` raw means it cannot hold snapshots. */
export interface DiskSnapshots {
  /** Index in spec.disks. */
  index: number;
  path: string;
  format: 'raw' | 'qcow2';
  snapshots: DiskSnapshot[];
}

/**
 * The VM's snapshots from what its disks hold, oldest first: every name any
 * qcow2 disk holds, `created_at` the earliest, flagged `incomplete` when not
 * every qcow2 disk holds it.
 */
export function mergeDiskSnapshots(disks: readonly DiskSnapshots[]): VmSnapshot[] {
  const qcow2 = disks.filter((d) => d.format === 'qcow2');
  const byName = new Map<string, { createdMs: number; disks: Set<number> }>();
  for (const d of qcow2) {
    for (const s of d.snapshots) {
      const seen = byName.get(s.name) ?? { createdMs: s.createdMs, disks: new Set<number>() };
      seen.createdMs = Math.min(seen.createdMs, s.createdMs);
      seen.disks.add(d.index);
      byName.set(s.name, seen);
    }
  }
  return [...byName.entries()]
    .sort((a, b) => a[1].createdMs - b[1].createdMs || (a[0] < b[0] ? -1 : 1))
    .map(([name, s]) => ({ name, created_at: new Date(s.createdMs).toISOString(), ...(s.disks.size < qcow2.length ? { incomplete: true } : {}) }));
}

/** Snapshots of one disk taken after `name` (qemu's table order: by time, then id), oldest first. */
export function snapshotsNewerThan(disk: DiskSnapshots, name: string): DiskSnapshot[] {
  const sorted = [...disk.snapshots].sort((a, b) => a.createdMs - b.createdMs || Number(a.id) - Number(b.id));
  const at = sorted.findIndex((s) => s.name === name);
  return at < 0 ? [] : sorted.slice(at + 1);
}

/** "create before-upgrade", "rollback to before-upgrade", "delete before-upgrade". */
export function describeSnapshotOp(op: string, name: string): string {
  return op === 'rollback' ? `rollback to ${name}` : `${op} ${name}`;
}

/** The sentence for a raw disk, which cannot hold snapshots. */
export function rawDiskProblem(index: number, path: string | undefined): string {
  return `Disk ${index + 1}${path ? ` (${path})` : ''} is raw, and only qcow2 disks can hold snapshots.`;
}
