/**
 * `vm snapshot create|rollback|delete|list` (docs/snapshots.md). The CLI
 * never talks to an agent: it writes `snapshot_request` into the VM record
 * with one compare-and-swap, and (by default) follows the record from the
 * revision it wrote until the VM's agent writes the outcome; a rollback of
 * a running VM is followed until the VM runs again.
 */
import { randomBytes } from 'node:crypto';
import { describeSnapshotOp, type SnapshotOp } from '../contract/snapshot.js';
import { DroverError } from '../lib/errors.js';
import { rawObject, type JsonObject } from '../store/vm-repository.js';
import { changesOnly } from '../lib/changes-only.js';
import type { VmRequestOptions, VmStore } from './vm-store.js';
import { writeRequest } from './request-write.js';
import { resolveVm } from './resolve-vm.js';
import { planSnapshotRequest, type SnapshotPlan } from './snapshot-plan.js';
import { vmLabel } from './vm-view.js';
import { followRequest } from './follow-request.js';

export interface SnapshotCommand extends VmRequestOptions {
  op: SnapshotOp;
  name: string;
}

export interface SnapshotResult {
  uuid: string;
  label: string;
  /** The request as written, or with its outcome after the wait. */
  request: JsonObject;
  /** The record after the wait (or as written). */
  record: JsonObject;
  /** The etcd revision of the request's write. */
  revision: string;
}

export async function requestSnapshot(store: VmStore, cmd: SnapshotCommand): Promise<SnapshotResult> {
  const found = await resolveVm(store.vms, cmd.ref);
  const label = vmLabel(found);
  const id = randomBytes(6).toString('hex');
  const { plan: decided, written, seen } = await writeRequest<SnapshotPlan>(store, found, label, cmd.authorize, (obj) => {
    const plan = planSnapshotRequest(obj, { op: cmd.op, name: cmd.name, id, now: new Date(), label });
    return { plan, next: plan.kind === 'write' ? { ...obj, snapshot_request: plan.request } : null };
  });
  if (decided?.kind === 'refuse') throw new DroverError(decided.code, decided.reason);
  if (decided === null || !written) throw new DroverError('NOT_FOUND', `VM ${label} no longer exists.`);
  let record = rawObject(written.raw) ?? {};
  if (cmd.waitSeconds !== null) {
    cmd.onProgress(`VM ${label}: snapshot ${describeSnapshotOp(cmd.op, cmd.name)} requested`);
    record = await followSnapshot(store, { key: seen.key, label, id, op: cmd.op, name: cmd.name, afterRevision: seen.modRevision, timeoutMs: cmd.waitSeconds * 1000, onProgress: cmd.onProgress });
  }
  return { uuid: found.uuid, label, request: (record.snapshot_request as JsonObject | undefined) ?? decided.request, record, revision: written.modRevision };
}

interface Follow {
  key: string;
  label: string;
  id: string;
  op: SnapshotOp;
  name: string;
  afterRevision: string;
  timeoutMs: number;
  onProgress(line: string): void;
}

/** Follows the request until the agent says done (and a rolled-back running VM runs again) or failed. */
function followSnapshot(store: VmStore, f: Follow): Promise<JsonObject> {
  const what = `snapshot ${describeSnapshotOp(f.op, f.name)}`;
  const say = changesOnly((line) => f.onProgress(`VM ${f.label}: ${line}`));
  return followRequest(store, {
    ...f,
    field: 'snapshot_request',
    what,
    failCode: 'SNAPSHOT_FAILED',
    next: (state, req, record) => {
      if (state === 'running') say(f.op === 'rollback' && req.restart === true ? 'stopping it to roll back' : `${what} under way`);
      if (state !== 'done') return undefined;
      if (req.restart !== true) return { done: record };
      // A running VM was rolled back: it counts once it runs again.
      const status = typeof record.status === 'string' ? record.status : '';
      if (status === 'RUNNING') return { done: record };
      if (status === 'ERROR' || status === 'KILLED') {
        const why = typeof record.error === 'string' && record.error !== '' ? `: ${record.error.replace(/[.\s]+$/, '')}` : '';
        return { fail: new DroverError('START_FAILED', `VM ${f.label} was rolled back to ${f.name} but did not start again (${status}${why}).`) };
      }
      say(`rolled back; starting it again (${status})`);
      return undefined;
    },
  });
}

export interface SnapshotListing {
  uuid: string;
  label: string;
  snapshots: JsonObject[];
  request: JsonObject | null;
}

export async function listSnapshots(store: VmStore, ref: string): Promise<SnapshotListing> {
  const found = await resolveVm(store.vms, ref);
  const obj = rawObject(found.raw) ?? {};
  const snapshots = Array.isArray(obj.snapshots) ? (obj.snapshots as JsonObject[]).filter((s) => typeof s === 'object' && s !== null) : [];
  const request = typeof obj.snapshot_request === 'object' && obj.snapshot_request !== null ? (obj.snapshot_request as JsonObject) : null;
  return { uuid: found.uuid, label: vmLabel(found), snapshots, request };
}
