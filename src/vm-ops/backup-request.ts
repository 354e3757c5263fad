/**
 * A backup or restore asked through the VM record (docs/backups.md,
 * "Through the API"): `backup_request` written with one compare-and-swap,
 * decided by the pure planBackupRequest on every attempt; the VM's agent
 * claims and carries it out (src/agent/backup-runner.ts). With a wait, the
 * record is followed until the agent reports `done` or `failed`.
 */
import { randomBytes } from 'node:crypto';
import { BACKUP_NAME_RE, isActiveBackupRequest, type BackupOp } from '../contract/backup-request.js';
import { AT_REST_STATUSES } from '../contract/status.js';
import { changesOnly } from '../lib/changes-only.js';
import { DroverError, type ErrorCode } from '../lib/errors.js';
import { rawObject, type JsonObject } from '../store/vm-repository.js';
import { writeRequest } from './request-write.js';
import { resolveVm } from './resolve-vm.js';
import type { VmRequestOptions, VmStore } from './vm-store.js';
import { vmLabel } from './vm-view.js';
import { followRequest } from './follow-request.js';

export interface BackupAsk {
  op: BackupOp;
  /** backup: its name; restore: the backup's id or name. */
  name?: string;
  /** The user who asked, noted in the request. */
  requestor?: string;
}

export type BackupPlan = { kind: 'write'; request: JsonObject } | { kind: 'refuse'; code: ErrorCode; reason: string };

const refuse = (code: ErrorCode, reason: string): BackupPlan => ({ kind: 'refuse', code, reason });

export function planBackupRequest(record: Readonly<JsonObject>, ask: BackupAsk & { id: string; now: Date; label: string }): BackupPlan {
  const { op, label } = ask;
  if (ask.name !== undefined && !BACKUP_NAME_RE.test(ask.name)) {
    return refuse('USAGE', `Backup name ${JSON.stringify(ask.name.slice(0, 80))} is invalid: use 1 to 64 letters, digits and "-_.:", starting with a letter or digit.`);
  }
  const status = typeof record.status === 'string' ? record.status : '';
  if (status === 'REQUESTED_DELETE') return refuse('CONFLICT', `VM ${label} is being deleted.`);
  if (typeof record.host !== 'string' || record.host === '') {
    return refuse('CONFLICT', `VM ${label} has no host yet; its disks are backed up by its host's agent once the scheduler has placed it.`);
  }
  const spec = (typeof record.spec === 'object' && record.spec !== null ? record.spec : {}) as JsonObject;
  const disks = Array.isArray(spec.disks) ? (spec.disks as JsonObject[]) : [];
  if (disks.length === 0) return refuse('CONFLICT', `VM ${label} has no disks to back up.`);
  const rbd = disks.findIndex((d) => typeof d.rbd === 'string');
  if (rbd >= 0) return refuse('CONFLICT', `Disk ${rbd} of VM ${label} is an RBD image; back it up with Ceph's own tools (rbd export).`);
  const pending = record.backup_request;
  if (isActiveBackupRequest(pending)) {
    const since = typeof pending.requested_at === 'string' ? ` since ${pending.requested_at}` : '';
    return refuse('CONFLICT', `VM ${label} has a ${pending.op === 'restore' ? 'restore' : 'backup'} under way${since}; wait for it to finish.`);
  }
  if (op === 'restore' && !AT_REST_STATUSES.has(status)) {
    return refuse('CONFLICT', `VM ${label} is ${status || 'without a status'}; stop it first (a restore overwrites the disks of a stopped VM only).`);
  }
  if (op === 'backup' && status !== 'RUNNING' && !AT_REST_STATUSES.has(status)) {
    return refuse('CONFLICT', `VM ${label} is ${status || 'without a status'}; a backup reads the disks of a RUNNING or stopped VM, so wait until it is one or the other.`);
  }
  const named = ask.name !== undefined ? (op === 'restore' ? { backup: ask.name } : { name: ask.name }) : {};
  return {
    kind: 'write',
    request: { op, id: ask.id, state: 'requested', requested_at: ask.now.toISOString(), ...(ask.requestor !== undefined ? { requestor: ask.requestor } : {}), ...named },
  };
}

export interface BackupCommand extends VmRequestOptions, BackupAsk {}

export interface BackupRequestResult {
  uuid: string;
  label: string;
  /** The request as written, or with its outcome after the wait. */
  request: JsonObject;
  record: JsonObject;
  /** The etcd revision of the request's write. */
  revision: string;
}

export async function requestBackup(store: VmStore, cmd: BackupCommand): Promise<BackupRequestResult> {
  if (cmd.op === 'restore' && cmd.name === undefined) throw new DroverError('USAGE', 'A restore needs the backup: its id or name.');
  const found = await resolveVm(store.vms, cmd.ref);
  const label = vmLabel(found);
  const id = randomBytes(6).toString('hex');
  const { plan, written, seen } = await writeRequest<BackupPlan>(store, found, label, cmd.authorize, (obj) => {
    const p = planBackupRequest(obj, { ...cmd, id, now: new Date(), label });
    return { plan: p, next: p.kind === 'write' ? { ...obj, backup_request: p.request } : null };
  });
  if (plan?.kind === 'refuse') throw new DroverError(plan.code, plan.reason);
  if (plan === null || !written) throw new DroverError('NOT_FOUND', `VM ${label} no longer exists.`);
  let record = rawObject(written.raw) ?? {};
  if (cmd.waitSeconds !== null) {
    record = await followBackup(store, { key: seen.key, label, id, op: cmd.op, afterRevision: written.modRevision, timeoutMs: cmd.waitSeconds * 1000, onProgress: cmd.onProgress });
  }
  return { uuid: found.uuid, label, request: (record.backup_request as JsonObject | undefined) ?? plan.request, record, revision: written.modRevision };
}

interface Follow {
  key: string;
  label: string;
  id: string;
  op: BackupOp;
  afterRevision: string;
  timeoutMs: number;
  onProgress(line: string): void;
}

/** Follows the request until the agent says done or failed. */
function followBackup(store: VmStore, f: Follow): Promise<JsonObject> {
  const say = changesOnly((line) => f.onProgress(`VM ${f.label}: ${line}`));
  return followRequest(store, {
    ...f,
    field: 'backup_request',
    what: f.op,
    failCode: 'BACKUP_FAILED',
    next: (state, req, record) => {
      if (state === 'done') return { done: record };
      if (state === 'running') say(`${f.op} under way on ${typeof req.host === 'string' ? req.host : 'its host'}`);
      return undefined;
    },
  });
}
