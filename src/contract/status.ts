/**
 * Status words of a VM record (CONTRACT.md section 3), as one closed list so the
 * schema, the reconcile decision and the CLI cannot disagree.
 *
 * Requests are written by users (or the CLI on their behalf); states are
 * written by the agent or the scheduler.
 */
export const REQUEST_STATUSES = [
  'REQUESTED_NEW',
  'REQUESTED_START',
  'TO_STOP',
  'REQUESTED_RESTART',
  'REQUESTED_DELETE',
  /** drover extension: move the running VM to `migration.target` (docs/migration.md). */
  'REQUESTED_MIGRATE',
] as const;

export const STATE_STATUSES = [
  'SCHEDULED',
  'STARTING',
  'RUNNING',
  'STOPPING',
  'STOP',
  'KILLED',
  'ERROR',
  /** drover extension: a live migration is under way (docs/migration.md). */
  'MIGRATING',
] as const;

export const VM_STATUSES = [...REQUEST_STATUSES, ...STATE_STATUSES] as const;

export type RequestStatus = (typeof REQUEST_STATUSES)[number];
export type StateStatus = (typeof STATE_STATUSES)[number];
export type VmStatus = (typeof VM_STATUSES)[number];

/** Statuses in which no qemu has the VM's disks open (a backup reads them as they are; a restore may overwrite them). */
export const AT_REST_STATUSES: ReadonlySet<string> = new Set<StateStatus>(['STOP', 'KILLED', 'ERROR']);

export const HOST_STATUSES = ['ALIVE', 'DEAD'] as const;
export type HostStatus = (typeof HOST_STATUSES)[number];
