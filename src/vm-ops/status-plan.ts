/**
 * What `vm start|stop|restart|delete` writes, decided from the record's
 * current status with no I/O, so it can be re-decided on every
 * compare-and-swap attempt and tested with tables.
 *
 * - write:  set `status` (and for `stop -F`, `force_stop: true`).
 * - noop:   the VM is already there or on its way; nothing is written.
 * - refuse: the request makes no sense now (the VM is being deleted).
 *
 * `force_stop` is a drover extension (docs/cli.md): set by `stop -F`, removed
 * by a plain stop so that an old forced request does not linger.
 */
import { isActiveBackupRequest } from '../contract/backup-request.js';
import type { RequestStatus } from '../contract/status.js';

export type VmAction = 'start' | 'stop' | 'restart' | 'delete';

/** What `--wait` waits for: a status, or the key's deletion. */
export type WaitGoal = 'RUNNING' | 'STOP' | 'deleted';

export const ACTION_GOALS: Readonly<Record<VmAction, WaitGoal>> = {
  start: 'RUNNING',
  stop: 'STOP',
  restart: 'RUNNING',
  delete: 'deleted',
};

export const ACTION_REQUESTS: Readonly<Record<VmAction, RequestStatus>> = {
  start: 'REQUESTED_START',
  stop: 'TO_STOP',
  restart: 'REQUESTED_RESTART',
  delete: 'REQUESTED_DELETE',
};

export type StatusPlan =
  | { kind: 'write'; status: RequestStatus; forceStop: boolean }
  | { kind: 'noop'; reason: string; done: boolean }
  | { kind: 'refuse'; reason: string };

export interface CurrentState {
  status?: unknown;
  force_stop?: unknown;
  backup_request?: unknown;
}

const STARTING = new Set(['REQUESTED_NEW', 'SCHEDULED', 'REQUESTED_START', 'STARTING']);
const STOPPING = new Set(['TO_STOP', 'STOPPING']);

export function planStatusChange(action: VmAction, current: CurrentState, opts: { force?: boolean } = {}): StatusPlan {
  const status = typeof current.status === 'string' ? current.status : '';
  const write = (forceStop = false): StatusPlan => ({ kind: 'write', status: ACTION_REQUESTS[action], forceStop });
  if (status === 'REQUESTED_DELETE') {
    return action === 'delete'
      ? { kind: 'noop', reason: 'is already being deleted', done: false }
      : { kind: 'refuse', reason: 'is being deleted' };
  }
  // A stopped VM's disks are being read or written by a backup or restore (docs/backups.md): no qemu may open them meanwhile.
  if ((action === 'start' || action === 'restart') && status !== 'RUNNING' && isActiveBackupRequest(current.backup_request)) {
    const req = current.backup_request;
    const since = typeof req.requested_at === 'string' ? ` since ${req.requested_at}` : '';
    return { kind: 'refuse', reason: `has a ${req.op === 'restore' ? 'restore' : 'backup'} under way${since}; wait for it to finish` };
  }
  switch (action) {
    case 'start':
      if (status === 'RUNNING') return { kind: 'noop', reason: 'is already running', done: true };
      // REQUESTED_NEW must stay: without a host, the scheduler places only REQUESTED_NEW records.
      if (STARTING.has(status)) return { kind: 'noop', reason: `is already starting (${status})`, done: false };
      if (status === 'REQUESTED_RESTART') return { kind: 'noop', reason: 'is already restarting', done: false };
      return write();
    case 'stop':
      if (status === 'STOP') return { kind: 'noop', reason: 'is already stopped', done: true };
      if (STOPPING.has(status) && (!opts.force || current.force_stop === true)) {
        return { kind: 'noop', reason: `is already stopping (${status})`, done: false };
      }
      return write(opts.force === true);
    case 'restart':
      if (status === 'REQUESTED_RESTART') return { kind: 'noop', reason: 'is already restarting', done: false };
      return write();
    case 'delete':
      return write();
  }
}

/** The record to write for a `write` plan; every other field stays as it is. */
export function applyPlan(record: Readonly<Record<string, unknown>>, plan: { status: RequestStatus; forceStop: boolean }): Record<string, unknown> {
  const next: Record<string, unknown> = { ...record, status: plan.status };
  if (plan.forceStop) next.force_stop = true;
  else if (plan.status === 'TO_STOP') delete next.force_stop;
  return next;
}
