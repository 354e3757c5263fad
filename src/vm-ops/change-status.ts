/**
 * `vm start|stop|restart|delete`: one compare-and-swap update through
 * VmRepository.update (unknown fields preserved), then optionally `--wait`.
 */
import { DroverError } from '../lib/errors.js';
import type { JsonObject } from '../store/vm-repository.js';
import { rawObject } from '../store/vm-repository.js';
import type { VmRequestOptions, VmStore } from './vm-store.js';
import { writeRequest } from './request-write.js';
import { resolveVm } from './resolve-vm.js';
import { ACTION_GOALS, applyPlan, planStatusChange, type StatusPlan, type VmAction } from './status-plan.js';
import { vmLabel } from './vm-view.js';
import { waitForGoal } from './wait-for-goal.js';

export interface ChangeRequest extends VmRequestOptions {
  action: VmAction;
  force: boolean;
  /** What --wait waits for; the action's goal (ACTION_GOALS) by default. */
  goal?: string;
}

export interface ChangeResult {
  uuid: string;
  label: string;
  plan: Exclude<StatusPlan, { kind: 'refuse' }>;
  /** The record after the change (or after the wait); null once deleted. */
  record: JsonObject | null;
  /** The etcd revision of our write; null when nothing was written. */
  revision: string | null;
}

export async function changeStatus(store: VmStore, req: ChangeRequest): Promise<ChangeResult> {
  const found = await resolveVm(store.vms, req.ref);
  const label = vmLabel(found);
  const { plan: decided, written, seen } = await writeRequest<StatusPlan>(store, found, label, req.authorize, (obj) => {
    const plan = planStatusChange(req.action, obj, { force: req.force });
    return { plan, next: plan.kind === 'write' ? applyPlan(obj, plan) : null };
  });
  if (decided === null) throw new DroverError('NOT_FOUND', `VM ${label} no longer exists.`);
  if (decided.kind === 'refuse') throw new DroverError('CONFLICT', `VM ${label} ${decided.reason}.`);
  let record = rawObject((written ?? seen).raw);
  const goal = req.goal ?? ACTION_GOALS[req.action];
  const already = decided.kind === 'noop' && (req.goal === undefined ? decided.done : record?.status === goal);
  if (req.waitSeconds !== null && !already) {
    // Watch from the revision our write was based on (or the one we read for
    // a no-op): our own write, and everything after it, is then replayed.
    const initialStatus = decided.kind === 'write' ? decided.status : String(rawObject(seen.raw)?.status ?? '');
    req.onProgress(`VM ${label}: ${initialStatus || '(no status)'}`);
    record = await waitForGoal(store.kv, {
      key: seen.key,
      label,
      afterRevision: seen.modRevision,
      initialStatus,
      goal,
      timeoutMs: req.waitSeconds * 1000,
      onStatus: (status) => req.onProgress(`VM ${label}: ${status}`),
    });
  }
  return { uuid: found.uuid, label, plan: decided, record, revision: written?.modRevision ?? null };
}
