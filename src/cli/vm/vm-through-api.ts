/**
 * `drover vm` through the HTTP API (`--api`): the same results as the etcd
 * path in vm-actions.ts, from the API's answers. The API applies the
 * caller's owner scoping; the CLI's own filters and columns apply after.
 */
import { apiListAll, apiRequest, type ApiTarget } from '../api-client.js';
import type { JsonObject } from '../../store/vm-repository.js';
import { ACTION_GOALS, planStatusChange, type StatusPlan, type VmAction } from '../../vm-ops/status-plan.js';

const vmPath = (ref: string) => `/api/v1/vms/${encodeURIComponent(ref.trim())}`;

export async function createThroughApi(api: ApiTarget, input: unknown): Promise<JsonObject> {
  return (await apiRequest<JsonObject>(api, 'POST', '/api/v1/vms', input)).data;
}

export function listThroughApi(api: ApiTarget): Promise<JsonObject[]> {
  return apiListAll<JsonObject>(api, '/api/v1/vms?sort=name');
}

export async function getThroughApi(api: ApiTarget, ref: string): Promise<JsonObject> {
  return (await apiRequest<JsonObject>(api, 'GET', vmPath(ref))).data;
}

export interface ApiChangeResult {
  uuid: string;
  label: string;
  plan: Exclude<StatusPlan, { kind: 'refuse' }>;
  record: JsonObject | null;
}

function labelOf(record: JsonObject): string {
  return typeof record.name === 'string' && record.name !== '' ? `${record.name} (${String(record.uuid)})` : String(record.uuid);
}

/** start|stop|restart|delete; with a wait, the API answers once the goal is reached (or says why not). */
export async function changeThroughApi(api: ApiTarget, action: VmAction, ref: string, force: boolean, waitSeconds: number | null): Promise<ApiChangeResult> {
  const wait = waitSeconds !== null ? `?wait=${ACTION_GOALS[action]}&timeout=${Math.max(1, Math.min(3600, Math.round(waitSeconds)))}` : '';
  const answer =
    action === 'delete'
      ? await apiRequest<JsonObject>(api, 'DELETE', `${vmPath(ref)}${wait}`)
      : await apiRequest<JsonObject>(api, 'POST', `${vmPath(ref)}/${action}${wait}`, action === 'stop' && force ? { force: true } : undefined);
  const record = answer.data.deleted === true ? null : answer.data;
  const label = record ? labelOf(record) : String(answer.data.uuid);
  if (answer.status === 202 || (record === null && waitSeconds === null)) {
    const status = String(record?.status ?? 'REQUESTED_DELETE');
    return { uuid: String(answer.data.uuid), label, plan: { kind: 'write', status: status as never, forceStop: record?.force_stop === true && action === 'stop' && force }, record };
  }
  // 200 without a wait: nothing was written; the reason is the same pure decision the etcd path makes.
  const plan = record ? planStatusChange(action, record, { force }) : { kind: 'noop' as const, reason: 'is deleted', done: true };
  return { uuid: String(answer.data.uuid), label, plan: plan.kind === 'refuse' ? { kind: 'noop', reason: plan.reason, done: false } : plan, record };
}
