/**
 * What becomes of a VM whose host died (pure; the scheduler's declareDead
 * writes it): a failover VM is placed on another host, any other is KILLED
 * with the reason, and a migration under way is marked failed.
 */
import { appendLog, type VmRecord } from '../contract/vm-record.js';
import type { JsonObject } from '../store/vm-repository.js';
import { placeVm, type PlacementPolicy } from './place-vm.js';

/** Migration states of a migration under way (docs/migration.md). */
const MIGRATION_UNDER_WAY = new Set(['requested', 'ready', 'sending']);

/** Statuses of VMs that need nothing from the scheduler when their host dies. */
export const AT_REST = new Set(['STOP', 'KILLED', 'ERROR']);

export function logOf(obj: JsonObject): string[] {
  return Array.isArray(obj.log) ? obj.log.filter((l): l is string => typeof l === 'string') : [];
}

/** The record to write (from `raw`, its unknown fields kept) and the sentence for its log and event. */
export function planLostVm(
  rec: VmRecord,
  raw: JsonObject,
  dead: string,
  capacities: Parameters<typeof placeVm>[1],
  policy: PlacementPolicy,
  now: Date,
): { obj: JsonObject; text: string } {
  const obj = { ...raw };
  let text: string;
  if (rec.spec.failover === true) {
    const candidates = rec.spec.drpnodes ?? rec.spec.nodes;
    const placement = placeVm(
      { memory: rec.spec.memory, vcpus: rec.spec.vcpus, nodes: candidates?.filter((n) => n !== dead) ?? undefined },
      capacities.filter((c) => c.name !== dead),
      policy,
    );
    if (placement.ok) {
      obj.host = placement.host;
      obj.status = 'SCHEDULED';
      obj.error = '';
      delete obj.runtime;
      text = `failed over from ${dead} (host dead) to ${placement.host}`;
    } else {
      obj.status = 'KILLED';
      obj.error = `Host ${dead} died and no other host can take the VM: ${placement.reason}`;
      delete obj.runtime;
      text = `host ${dead} died; failover found no host`;
    }
  } else {
    obj.status = 'KILLED';
    obj.error = `Host ${dead} died (its lease expired); the VM was not restarted elsewhere because spec.failover is not set.`;
    delete obj.runtime;
    text = `host ${dead} died`;
  }
  if (rec.migration && MIGRATION_UNDER_WAY.has(rec.migration.state)) {
    // So that no agent takes it for a migration still under way (the target kills its waiting qemu).
    obj.migration = { ...(obj.migration as JsonObject), state: 'failed', error: `host ${dead} died during the migration`, finished_at: now.toISOString() };
    text += `; its migration to ${rec.migration.target} failed`;
  }
  obj.log = appendLog(logOf(obj), text, now);
  return { obj, text };
}
