/**
 * What `vm snapshot create|rollback|delete` writes, decided from the record
 * with no I/O (re-decided on every compare-and-swap attempt; tested with
 * tables). The CLI refuses what it can see is wrong (a bad name, a raw disk
 * the spec names as raw, a name taken or unknown in the record's
 * `snapshots`, a request already under way); the agent checks again against
 * the disks themselves, which only it can read.
 */
import { rawDiskProblem, snapshotNameProblem, type SnapshotOp } from '../contract/snapshot.js';
import type { ErrorCode } from '../lib/errors.js';
import type { JsonObject } from '../store/vm-repository.js';

export type SnapshotPlan = { kind: 'write'; request: JsonObject } | { kind: 'refuse'; code: ErrorCode; reason: string };

export interface SnapshotAsk {
  op: SnapshotOp;
  name: string;
  /** Names this request, so the CLI can tell its outcome from a later request's. */
  id: string;
  now: Date;
  /** `web-1 (2b0c…)`, for the sentences. */
  label: string;
}

const refuse = (code: ErrorCode, reason: string): SnapshotPlan => ({ kind: 'refuse', code, reason });

export function planSnapshotRequest(record: Readonly<JsonObject>, ask: SnapshotAsk): SnapshotPlan {
  const { op, name, label } = ask;
  const badName = snapshotNameProblem(name);
  if (badName) return refuse('USAGE', badName);
  if (record.status === 'REQUESTED_DELETE') return refuse('CONFLICT', `VM ${label} is being deleted.`);
  if (typeof record.host !== 'string' || record.host === '') {
    return refuse('CONFLICT', `VM ${label} has no host yet; its snapshots are taken by its host's agent once the scheduler has placed it.`);
  }
  const spec = (typeof record.spec === 'object' && record.spec !== null ? record.spec : {}) as JsonObject;
  const disks = Array.isArray(spec.disks) ? (spec.disks as JsonObject[]) : [];
  if (disks.length === 0) return refuse('CONFLICT', `VM ${label} has no disks to snapshot.`);
  for (const [i, disk] of disks.entries()) {
    if (typeof disk.rbd === 'string') return refuse('CONFLICT', `Disk ${i + 1} of VM ${label} is the RBD image ${disk.rbd}; drover snapshots qcow2 files only.`);
    if (op !== 'delete' && disk.format === 'raw') {
      const problem = rawDiskProblem(i, typeof disk.path === 'string' ? disk.path : undefined);
      return refuse('CONFLICT', `VM ${label} cannot be snapshotted: ${problem.charAt(0).toLowerCase()}${problem.slice(1)}`);
    }
  }
  const pending = record.snapshot_request as { op?: unknown; name?: unknown; state?: unknown; requested_at?: unknown } | undefined;
  // A request with no state is `requested` (the schema's default).
  if (typeof pending === 'object' && pending !== null && (pending.state === undefined || pending.state === 'requested' || pending.state === 'running')) {
    const since = typeof pending.requested_at === 'string' ? ` since ${pending.requested_at}` : '';
    return refuse('CONFLICT', `VM ${label} has a snapshot ${String(pending.op)} ${String(pending.name)} under way${since}; wait for it to finish.`);
  }
  const known = Array.isArray(record.snapshots) ? (record.snapshots as Array<{ name?: unknown }>).map((s) => s.name) : [];
  if (op === 'create' && known.includes(name)) return refuse('CONFLICT', `VM ${label} already has a snapshot named ${name}.`);
  if (op !== 'create' && !known.includes(name)) {
    return refuse('NOT_FOUND', `VM ${label} has no snapshot named ${name}; \`drover vm snapshot list\` shows them.`);
  }
  return { kind: 'write', request: { op, name, id: ask.id, state: 'requested', requested_at: ask.now.toISOString() } };
}
