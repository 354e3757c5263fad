/**
 * Who may touch which keys (docs/security.md "etcd users and roles"). Pure:
 * the key ranges each component's etcd role is granted under one prefix.
 * `setup-auth.ts` applies them; the table test checks them.
 *
 * etcd's RBAC grants read, write or both on one key or one prefix. Where
 * it cannot say what we mean (an agent may write only the VMs designated
 * to it; an agent's events are not marked as its own), the grant is wider
 * than the rule and docs/security.md names the residual risk.
 */
import type { KeySpace } from '../contract/keys.js';

export type Permission = 'Read' | 'Write' | 'Readwrite';

/** One grant: a single key, or every key under a prefix. */
export interface Grant {
  readonly permission: Permission;
  readonly key?: string;
  readonly prefix?: string;
}

export type Component = { kind: 'scheduler' } | { kind: 'api' } | { kind: 'host'; name: string };

const rw = (prefix: string): Grant => ({ permission: 'Readwrite', prefix });
const read = (prefix: string): Grant => ({ permission: 'Read', prefix });
const rwKey = (key: string): Grant => ({ permission: 'Readwrite', key });

/**
 * A host's agent: its own host record, liveness key, stats and console
 * tickets; VM records (status and runtime of its VMs: the residual risk),
 * events. Reads what starting a VM needs (hosts for migration targets,
 * images, pools, settings). Nothing under P/auth/.
 */
function hostGrants(keys: KeySpace, name: string): Grant[] {
  return [
    rw(keys.vmPrefix),
    read(keys.hostPrefix),
    rwKey(keys.host(name)),
    read(keys.alivePrefix),
    rwKey(keys.alive(name)),
    rwKey(keys.stats(name)),
    rw(keys.logPrefix),
    read(keys.imagePrefix),
    read(keys.poolPrefix),
    read(keys.configPrefix),
    rw(keys.consoleTicketPrefix(name)),
  ];
}

/**
 * The scheduler: placement and failover write VM records and pools, and a
 * dead host's record (`status: DEAD`); it reads liveness, stats, images.
 */
function schedulerGrants(keys: KeySpace): Grant[] {
  return [
    rw(keys.vmPrefix),
    rw(keys.poolPrefix),
    rw(keys.logPrefix),
    rw(keys.electionPrefix),
    rw(keys.hostPrefix),
    read(keys.alivePrefix),
    read(keys.statsPrefix),
    read(keys.imagePrefix),
    read(keys.configPrefix),
  ];
}

/**
 * The API reads everything under the prefix (its event stream watches it
 * whole) and writes what users may change: VMs, pools, images, settings,
 * hosts (drain), accounts and sessions under P/auth/, console tickets,
 * events (the audit trail). Never liveness, stats or the election.
 */
function apiGrants(keys: KeySpace): Grant[] {
  return [
    read(`${keys.prefix}/`),
    rw(keys.vmPrefix),
    rw(keys.poolPrefix),
    rw(keys.imagePrefix),
    rw(keys.configPrefix),
    rw(keys.hostPrefix),
    rw(keys.auth.prefix),
    rw(`${keys.prefix}/console/`),
    rw(keys.logPrefix),
  ];
}

export function grantsFor(keys: KeySpace, who: Component): Grant[] {
  switch (who.kind) {
    case 'host':
      return hostGrants(keys, who.name);
    case 'scheduler':
      return schedulerGrants(keys);
    case 'api':
      return apiGrants(keys);
  }
}

/**
 * The etcd role of a component under a prefix: `drover:<prefix>:<user>`,
 * so one etcd can hold several drover clusters (tests do) and a user holds
 * one role per cluster.
 */
export function roleName(keys: KeySpace, user: string): string {
  return `drover:${keys.prefix || '/'}:${user}`;
}

/** Whether `grants` allow `permission` on `key` (what etcd will decide; for tests and `drover etcd setup-auth --check`). */
export function allows(grants: readonly Grant[], key: string, permission: 'Read' | 'Write'): boolean {
  return grants.some((g) => (g.permission === 'Readwrite' || g.permission === permission) && (g.key !== undefined ? g.key === key : key.startsWith(g.prefix ?? '\u0000')));
}
