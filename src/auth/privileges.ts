/**
 * Roles and privileges, after Proxmox's model (docs/security.md). A route
 * declares the one privilege it needs; this table says which roles hold it.
 * Ownership is separate: a `user` holds the VM privileges only on VMs whose
 * `owner` is itself (api/vm-access.ts), every other role on every VM.
 */
import type { Role } from '../contract/auth-records.js';

export const PRIVILEGES = [
  'VM.Audit',
  'VM.PowerMgmt',
  'VM.Console',
  'VM.Config',
  'VM.Snapshot',
  'VM.Backup',
  'VM.Allocate',
  'VM.Migrate',
  'Host.Audit',
  /** Drain and undrain hosts (drover extension of the list). */
  'Host.Modify',
  'Pool.Allocate',
  'User.Modify',
  'Sys.Audit',
  'Sys.Admin',
] as const;
export type Privilege = (typeof PRIVILEGES)[number];

const VM_OWN: readonly Privilege[] = ['VM.Audit', 'VM.PowerMgmt', 'VM.Console', 'VM.Config', 'VM.Snapshot', 'VM.Backup', 'VM.Allocate'];

export const ROLE_PRIVILEGES: Readonly<Record<Role, ReadonlySet<Privilege>>> = {
  admin: new Set(PRIVILEGES),
  operator: new Set<Privilege>([...VM_OWN, 'VM.Migrate', 'Host.Audit', 'Host.Modify']),
  // VM.Migrate chooses a host, which only operators and admins may do.
  user: new Set<Privilege>(VM_OWN),
  auditor: new Set<Privilege>(['VM.Audit', 'Host.Audit', 'Sys.Audit']),
};

export function hasPrivilege(role: Role, privilege: Privilege): boolean {
  return ROLE_PRIVILEGES[role].has(privilege);
}

/**
 * Whether `role` grants nothing beyond `limit` (a token's role may not
 * exceed its user's). auditor and user are not nested (an auditor reads
 * hosts, a user acts on its VMs), so "no higher" means a subset, and a
 * scoped role never widens to every VM.
 */
export function roleWithin(role: Role, limit: Role): boolean {
  for (const p of ROLE_PRIVILEGES[role]) if (!ROLE_PRIVILEGES[limit].has(p)) return false;
  return seesAllVms(role) ? seesAllVms(limit) : true;
}

/**
 * The role that applies when a token (or session) of `tokenRole` is used by
 * a user now holding `userRole`; null when the user's role changed so that
 * the token's is no longer within it. Falling back to the user's new role
 * could widen what the token may do (an auditor token of a user demoted to
 * `user` would gain VM.PowerMgmt), so such a token is refused instead.
 */
export function effectiveRole(tokenRole: Role, userRole: Role): Role | null {
  return roleWithin(tokenRole, userRole) ? tokenRole : null;
}

/** Whether the role sees every VM (not only its own). */
export function seesAllVms(role: Role): boolean {
  return role !== 'user';
}
