/**
 * `vm migrate VM --to HOST` (docs/migration.md).
 *
 * The CLI checks what it can see (the target is ALIVE, not drained, has the
 * memory; the VM is in a state that can move), then writes one
 * compare-and-swap: a RUNNING VM gets `REQUESTED_MIGRATE` and
 * `migration.target` (the two agents do the live migration); a stopped VM
 * is moved cold (only `host` changes). `--wait` follows the record,
 * printing progress, until the migration completes or fails.
 */
import { DroverError } from '../lib/errors.js';
import type { HostRepository, StoredHost } from '../store/host-repository.js';
import { rawObject, type JsonObject } from '../store/vm-repository.js';
import { changesOnly } from '../lib/changes-only.js';
import type { VmRequestOptions, VmStore } from './vm-store.js';
import { writeRequest } from './request-write.js';
import { resolveVm } from './resolve-vm.js';
import { vmLabel } from './vm-view.js';
import { followRecord } from './wait-for-goal.js';

export type MigrationPlan =
  | { kind: 'live' }
  | { kind: 'cold' }
  | { kind: 'noop'; reason: string }
  | { kind: 'refuse'; reason: string };

/** Statuses of a VM that is not running and can be moved by changing `host` alone. */
const AT_REST = new Set(['STOP', 'KILLED', 'ERROR']);

/** What migrating this record to `to` means, decided with no I/O (tested with tables). */
export function planMigration(record: Readonly<Record<string, unknown>>, to: string): MigrationPlan {
  const status = typeof record.status === 'string' ? record.status : '';
  const host = typeof record.host === 'string' ? record.host : '';
  const migration = typeof record.migration === 'object' && record.migration !== null ? (record.migration as JsonObject) : {};
  if (status === 'REQUESTED_MIGRATE' || status === 'MIGRATING') {
    return { kind: 'refuse', reason: `is already migrating to ${String(migration.target ?? '?')}` };
  }
  if (host === '') return { kind: 'refuse', reason: 'has no host yet (the scheduler places it)' };
  if (host === to) return { kind: 'noop', reason: `is already on ${to}` };
  if (status === 'RUNNING') return { kind: 'live' };
  if (AT_REST.has(status)) return { kind: 'cold' };
  return { kind: 'refuse', reason: `is ${status || 'without a status'}; only a RUNNING VM (live) or a stopped one (cold) can move` };
}

/** The record after the request: live asks the agents, cold just changes `host`. */
export function applyMigration(record: Readonly<Record<string, unknown>>, plan: MigrationPlan, to: string, now: Date): JsonObject {
  const next: JsonObject = { ...record };
  if (plan.kind === 'live') {
    next.status = 'REQUESTED_MIGRATE';
    next.migration = { target: to, requested_at: now.toISOString() };
  } else if (plan.kind === 'cold') {
    next.host = to;
    delete next.runtime;
  }
  return next;
}

/** Why `host` cannot take the VM, or null. */
export function targetProblem(host: StoredHost | null, name: string, memory: number): string | null {
  if (!host) return `No host is named ${JSON.stringify(name)}.`;
  if (host.status !== 'ALIVE') return `Host ${name} is ${host.status}; a VM can only move to an ALIVE host.`;
  if (host.record?.drained === true) return `Host ${name} is drained; undrain it or choose another host.`;
  const free = host.record?.free_memory;
  if (typeof free === 'number' && free < memory) return `Host ${name} has ${free} MiB free, less than the VM's ${memory} MiB.`;
  return null;
}

/** `waitSeconds`: for the end of a live migration. */
export interface MigrateRequest extends VmRequestOptions {
  to: string;
}

export interface MigrateResult {
  uuid: string;
  label: string;
  plan: Exclude<MigrationPlan, { kind: 'refuse' }>;
  record: JsonObject | null;
  /** The etcd revision written; null when nothing was. */
  revision: string | null;
}

export async function migrateVm(store: VmStore & { readonly hosts: HostRepository }, req: MigrateRequest): Promise<MigrateResult> {
  const found = await resolveVm(store.vms, req.ref);
  const label = vmLabel(found);
  const memory = Number((rawObject(found.raw)?.spec as JsonObject | undefined)?.memory ?? 0);
  const problem = targetProblem(await store.hosts.get(req.to), req.to, memory);
  if (problem) throw new DroverError(problem.startsWith('No host') ? 'NOT_FOUND' : 'CONFLICT', problem);

  const { plan: decided, written, seen } = await writeRequest<MigrationPlan>(store, found, label, req.authorize, (obj) => {
    const plan = planMigration(obj, req.to);
    return { plan, next: plan.kind === 'live' || plan.kind === 'cold' ? applyMigration(obj, plan, req.to, new Date()) : null };
  });
  if (decided === null) throw new DroverError('NOT_FOUND', `VM ${label} no longer exists.`);
  if (decided.kind === 'refuse') throw new DroverError('CONFLICT', `VM ${label} ${decided.reason}.`);
  let record = rawObject((written ?? seen).raw);
  if (decided.kind === 'live' && req.waitSeconds !== null) {
    req.onProgress(`VM ${label}: migration to ${req.to} requested`);
    record = await followMigration(store, { key: seen.key, label, to: req.to, afterRevision: seen.modRevision, timeoutMs: req.waitSeconds * 1000, onProgress: req.onProgress });
  }
  return { uuid: found.uuid, label, plan: decided, record, revision: written?.modRevision ?? null };
}

export interface FollowMigration {
  key: string;
  label: string;
  to: string;
  afterRevision: string;
  timeoutMs: number;
  onProgress(line: string): void;
}

/** Follows a live migration until the record has moved to `to` (resolves) or says it failed (rejects). */
export function followMigration(store: VmStore, req: FollowMigration): Promise<JsonObject> {
  let state = 'requested';
  const say = changesOnly((line) => req.onProgress(line));
  return followRecord<JsonObject>(store.kv, {
    key: req.key,
    label: req.label,
    afterRevision: req.afterRevision,
    timeoutMs: req.timeoutMs,
    timedOut: () => new DroverError('TIMEOUT', `The migration of VM ${req.label} to ${req.to} did not end within ${Math.round(req.timeoutMs / 1000)} s (state ${state}).`),
    onDelete: () => ({ fail: new DroverError('NOT_FOUND', `VM ${req.label} was deleted during its migration.`) }),
    onRecord: (record) => {
      const m = (record?.migration ?? {}) as JsonObject;
      state = typeof m.state === 'string' ? m.state : state;
      if (m.target !== req.to) return { fail: new DroverError('CONFLICT', `VM ${req.label}'s migration was replaced by another request.`) };
      if (state === 'failed') {
        const why = typeof m.error === 'string' ? m.error : 'no reason given';
        return { fail: new DroverError('MIGRATION_FAILED', `The migration of VM ${req.label} to ${req.to} failed: ${why.replace(/[.\s]+$/, '')}; it keeps running on ${String(record?.host)}.`) };
      }
      if (state === 'completed' && record?.host === req.to) {
        say(`VM ${req.label}: now runs on ${req.to}`);
        return { done: record };
      }
      say(`VM ${req.label}: ${describeMigration(m)}`);
      return undefined;
    },
  });
}

/** "sending 45% (43 of 96 MiB)", "target ready", ... */
export function describeMigration(m: JsonObject): string {
  const p = m.progress as { transferred?: number; total?: number } | undefined;
  switch (m.state) {
    case 'requested':
      return m.source ? `waiting for ${String(m.target)} to get ready` : 'requested';
    case 'ready':
      return `${String(m.target)} is ready`;
    case 'sending': {
      if (!p?.total) return 'sending';
      const mib = (b: number) => Math.round(b / 1048576);
      const pct = Math.min(100, Math.floor(((p.transferred ?? 0) / p.total) * 100));
      return `sending ${pct}% (${mib(p.transferred ?? 0)} of ${mib(p.total)} MiB)`;
    }
    default:
      return String(m.state ?? 'requested');
  }
}
