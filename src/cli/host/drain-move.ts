/**
 * `host drain NAME --move`: after the host is drained, every VM on it is
 * moved away, one at a time. Each VM's new host is chosen by the scheduler's
 * own placement rules (placeVm over a ClusterView read once, with every
 * choice counted before the next), never the drained host:
 * - a RUNNING VM is migrated live (`vm migrate`, followed to the end);
 * - a stopped one (STOP, KILLED, ERROR) is moved cold: its `host` changes;
 * - a VM in any other state (starting, stopping, migrating) is left, and
 *   said so: run the command again once it has settled.
 * A migration that fails leaves its VM running where it was; the command
 * goes on with the next VM and exits 1 at the end.
 */
import { schedulerConfigSchema } from '../../config/agent-config.js';
import { DroverError, errorMessage } from '../../lib/errors.js';
import { ClusterView } from '../../scheduler/cluster-view.js';
import { placeVm, type PlacementPolicy } from '../../scheduler/place-vm.js';
import { rawObject, type JsonObject, type StoredVm } from '../../store/vm-repository.js';
import type { StoreSession } from '../store-session.js';
import { applyMigration, followMigration, planMigration } from '../../vm-ops/migrate-vm.js';
import { vmLabel } from '../../vm-ops/vm-view.js';

/** The scheduler's defaults, from its config schema; the CLI does not read the scheduler's config file. */
const DEFAULTS = schedulerConfigSchema.parse({});
const POLICY: PlacementPolicy = { strategy: DEFAULTS.scheduler_strategy, overheadMiB: DEFAULTS.vm_memory_overhead, cpuOvercommit: DEFAULTS.cpu_overcommit };

export interface MoveOutcome {
  uuid: string;
  label: string;
  /** live / cold: moved to `to`; left: not moved, `reason` says why. */
  result: 'live' | 'cold' | 'left';
  to?: string;
  reason?: string;
}

export async function moveVmsOff(store: StoreSession, host: string, timeoutMs: number, say: (line: string) => void): Promise<MoveOutcome[]> {
  const { keys, kv } = store;
  const view = new ClusterView(keys, POLICY.overheadMiB);
  for (const prefix of [keys.alivePrefix, keys.hostPrefix, keys.vmPrefix]) {
    for (const e of (await kv.list(prefix)).entries) view.put(e);
  }
  const outcomes: MoveOutcome[] = [];
  for (const vm of view.vmsOn(host)) {
    outcomes.push(await moveOne(store, view, vm, host, timeoutMs, say));
  }
  return outcomes;
}

async function moveOne(store: StoreSession, view: ClusterView, vm: StoredVm, from: string, timeoutMs: number, say: (line: string) => void): Promise<MoveOutcome> {
  const label = vmLabel(vm);
  const left = (reason: string): MoveOutcome => {
    say(`VM ${label}: left on ${from}: ${reason}`);
    return { uuid: vm.uuid, label, result: 'left', reason };
  };
  if (!vm.parsed.ok) return left(`its record is invalid (${vm.parsed.error})`);
  const rec = vm.parsed.value;
  const nodes = (rec.spec.nodes ?? view.capacities().map((c) => c.name)).filter((n) => n !== from);
  const placement = placeVm({ memory: rec.spec.memory, vcpus: rec.spec.vcpus, nodes }, view.capacities(), POLICY);
  if (!placement.ok) return left(placement.reason);
  const to = placement.host;

  let plan = planMigration(rawObject(vm.raw) ?? {}, to);
  let seen: StoredVm = vm;
  try {
    await store.vms.update(vm.uuid, (current) => {
      seen = current;
      const obj = rawObject(current.raw) ?? {};
      plan = planMigration(obj, to);
      return plan.kind === 'live' || plan.kind === 'cold' ? applyMigration(obj, plan, to, new Date()) : null;
    });
  } catch (err) {
    return left(errorMessage(err));
  }
  if (plan.kind !== 'live' && plan.kind !== 'cold') return left(`it ${plan.reason}`);
  view.reserve(vm.uuid, to, rec.spec.memory, rec.spec.vcpus);
  if (plan.kind === 'cold') {
    say(`VM ${label}: not running; moved to ${to}`);
    return { uuid: vm.uuid, label, result: 'cold', to };
  }
  say(`VM ${label}: migrating live to ${to}`);
  try {
    await followMigration(store, { key: seen.key, label, to, afterRevision: seen.modRevision, timeoutMs, onProgress: say });
  } catch (err) {
    view.release(vm.uuid);
    return left(err instanceof DroverError ? err.message.replace(/\.$/, '') : errorMessage(err));
  }
  return { uuid: vm.uuid, label, result: 'live', to };
}

/** One line per outcome kind, for the end of the command. */
export function summarizeMoves(host: string, outcomes: readonly MoveOutcome[]): JsonObject {
  const count = (r: MoveOutcome['result']) => outcomes.filter((o) => o.result === r).length;
  return { host, live: count('live'), cold: count('cold'), left: count('left'), vms: outcomes as unknown as JsonObject[] };
}
