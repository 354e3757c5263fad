/** An event, `P/log/<sortable-id>` (CONTRACT.md section 5). */
import { randomBytes } from 'node:crypto';

export type EventLevel = 'info' | 'warn' | 'error';

/** Short codes; the list grows with the product (docs/events.md lists them). */
export type EventCode =
  | 'vm.started'
  | 'vm.adopted'
  | 'vm.stopped'
  | 'vm.crashed'
  | 'vm.restarted'
  | 'vm.poweroff'
  | 'vm.killed'
  | 'vm.deleted'
  | 'vm.error'
  | 'vm.foreign'
  | 'vm.missing'
  | 'vm.failover'
  | 'vm.fenced'
  | 'vm.migrating'
  | 'vm.migrated'
  | 'vm.migration_failed'
  | 'image.refused'
  | 'vm.snapshot_created'
  | 'vm.snapshot_deleted'
  | 'vm.snapshot_rolled_back'
  | 'vm.snapshot_failed'
  | 'vm.backup_created'
  | 'vm.backup_restored'
  | 'vm.backup_failed'
  | 'host.up'
  | 'host.down'
  | 'host.storage_low'
  | 'host.storage_ok'
  | 'host.storage_error'
  /** A host drained or undrained through the API (`requestor` says who). */
  | 'host.drained'
  | 'pool.vm_created'
  | 'pool.vm_finished'
  | 'pool.wallclock'
  | 'pool.backoff'
  | 'pool.error'
  | 'agent.resync'
  /** A VM created, changed, deleted or acted on through the API (`requestor` says who). */
  | 'vm.requested'
  | 'auth.login'
  | 'auth.login_failed'
  | 'auth.logout'
  | 'user.added'
  | 'user.deleted'
  | 'token.created'
  | 'token.revoked';

export interface DroverEvent {
  ts: string;
  host: string;
  vm?: string;
  level: EventLevel;
  event: EventCode;
  message: string;
  /** drover extension, on what the API writes: the user who asked. */
  requestor?: string;
  /** The id of the API token used (never the token). */
  token_id?: string;
  /** The VM's owner when the event was written (for owner-scoped event streams). */
  owner?: string;
  /** The etcd revision of the VM record the request wrote (vms/{id}/history). */
  revision?: string;
  /** The top-level record fields the request changed. */
  fields?: string[];
}

/**
 * Sortable ids: the time in milliseconds, zero-padded, then random bits, so
 * that a range read of `P/log/` returns events oldest first.
 */
export function eventId(now: Date): string {
  return `${now.getTime().toString().padStart(15, '0')}-${randomBytes(5).toString('hex')}`;
}
