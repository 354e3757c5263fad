/**
 * Fields only an admin (Sys.Admin) may set, because they reach outside the
 * caller's own VM: `owner` other than oneself, `host` and the placement
 * hints that amount to it (`spec.nodes`, `spec.autostart_node`,
 * `spec.drpnodes`), `pool` (joining or leaving a pool changes what the
 * scheduler keeps running), `path` and `rbd` disks (host files, cluster
 * storage), NICs on a host bridge (only `user` networking otherwise), and
 * kernel or initrd files outside the allowed boot directories. Anyone else who sends one gets 403 naming
 * the field; nothing is dropped silently and nothing is written. A field
 * that stays as it was (a PATCH of `memory` on a VM an admin gave a path
 * disk) is not a change and is not refused.
 *
 * Also here: the fields only drover itself writes (status through the
 * actions, the agent's runtime, logs, migration, snapshot and backup state), which
 * no create or PATCH may set (400).
 */
import { isDeepStrictEqual } from 'node:util';
import type { Principal } from '../auth/authenticate.js';
import { hasPrivilege } from '../auth/privileges.js';
import type { JsonObject } from '../store/vm-repository.js';
import { FieldError } from './errors.js';

export const SYSTEM_FIELDS = ['status', 'runtime', 'log', 'error', 'migration', 'snapshots', 'snapshot_request', 'backup_request', 'pending_reason', 'force_stop'] as const;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function forbidden(field: string, why: string): FieldError {
  return new FieldError(field, `Only an admin may set ${field}: ${why}.`, 'FORBIDDEN');
}

/** Whether `path` lies under one of `dirs`; a path with `.` or `..` segments never does. */
function under(path: string, dirs: readonly string[]): boolean {
  if (path.split('/').some((seg) => seg === '..' || seg === '.')) return false;
  return dirs.some((d) => path.startsWith(d.endsWith('/') ? d : `${d}/`));
}

/** Refuses what the principal may not set in `next` (compared with `before`, null for a new VM). */
export function refuseAdminFields(principal: Principal, before: JsonObject | null, next: JsonObject, bootDirs: readonly string[]): void {
  if (hasPrivilege(principal.role, 'Sys.Admin')) return;
  // A chosen uuid could probe for others' VMs (a conflict says it exists) or revive a deleted VM's events.
  if (before === null && next.uuid !== undefined) throw forbidden('uuid', 'drover chooses a new VM\'s uuid');
  if (next.owner !== undefined && next.owner !== principal.user && next.owner !== before?.owner) {
    throw forbidden('owner', `a VM you create or change is owned by you (${principal.user})`);
  }
  const host = next.host;
  if (host !== undefined && host !== '' && host !== before?.host) throw forbidden('host', 'the scheduler chooses the host');
  if (!isDeepStrictEqual(next.pool, before?.pool)) throw forbidden('pool', 'pools are run by the scheduler');
  const spec = isObject(next.spec) ? next.spec : {};
  const oldSpec = before && isObject(before.spec) ? before.spec : {};
  for (const hint of ['nodes', 'autostart_node', 'drpnodes'] as const) {
    if (!isDeepStrictEqual(spec[hint], oldSpec[hint])) throw forbidden(`spec.${hint}`, 'the scheduler chooses the host');
  }
  const oldNics = Array.isArray(oldSpec.nics) ? oldSpec.nics : [];
  for (const [i, nic] of (Array.isArray(spec.nics) ? spec.nics : []).entries()) {
    if (!isObject(nic) || nic.network === 'user' || oldNics.some((n) => isDeepStrictEqual(n, nic))) continue;
    throw forbidden(`spec.nics.${i}.network`, 'a host bridge is the host\'s network; use "user"');
  }
  const oldDisks = Array.isArray(oldSpec.disks) ? oldSpec.disks : [];
  for (const [i, disk] of (Array.isArray(spec.disks) ? spec.disks : []).entries()) {
    if (!isObject(disk)) continue;
    const kept = oldDisks.some((d) => isDeepStrictEqual(d, disk));
    if (disk.path !== undefined && !kept) throw forbidden(`spec.disks.${i}.path`, 'a path disk is a file on the host; use an image disk');
    if (disk.rbd !== undefined && !kept) throw forbidden(`spec.disks.${i}.rbd`, 'an rbd disk is cluster storage; use an image disk');
  }
  const boot = isObject(spec.boot) ? spec.boot : {};
  const oldBoot = isObject(oldSpec.boot) ? oldSpec.boot : {};
  for (const file of ['kernel', 'initrd'] as const) {
    const path = boot[file];
    if (typeof path !== 'string' || path === oldBoot[file] || under(path, bootDirs)) continue;
    const where = bootDirs.length > 0 ? `a user's ${file} must be under ${bootDirs.join(' or ')}` : `no boot directory is open to users`;
    throw forbidden(`spec.boot.${file}`, where);
  }
}

/** Refuses a create or PATCH that sets a field only drover writes. */
export function refuseSystemFields(before: JsonObject | null, next: JsonObject): void {
  for (const field of SYSTEM_FIELDS) {
    if (!(field in next) || isDeepStrictEqual(next[field], before?.[field])) continue;
    if (field === 'status' && before === null && next.status === 'REQUESTED_NEW') continue;
    const how = field === 'status' ? 'use the start, stop and restart actions or DELETE' : 'drover writes it';
    throw new FieldError(field, `Field ${field} cannot be set through the API: ${how}.`);
  }
}

export function refuseUuidChange(before: JsonObject, next: JsonObject): void {
  if (next.uuid !== before.uuid) throw new FieldError('uuid', 'Field uuid cannot be changed.');
}
