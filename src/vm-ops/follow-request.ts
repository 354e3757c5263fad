/**
 * Follows a request written into a VM record's field (`snapshot_request`,
 * `backup_request`) until its agent reports the outcome: the request is
 * known by its `id` (a later request replacing it fails the wait), `failed`
 * ends it with the agent's sentence, and the caller's `next` decides the
 * other states.
 */
import { DroverError, type ErrorCode } from '../lib/errors.js';
import type { JsonObject } from '../store/vm-repository.js';
import type { VmStore } from './vm-store.js';
import { followRecord, type FollowVerdict } from './wait-for-goal.js';

export interface RequestFollow {
  key: string;
  label: string;
  afterRevision: string;
  timeoutMs: number;
  field: 'snapshot_request' | 'backup_request';
  id: string;
  /** "snapshot create before-upgrade", "backup": for the sentences. */
  what: string;
  failCode: ErrorCode;
  /** The verdict on a request that is not failed (state `requested`, `running`, `done`). */
  next(state: string, req: JsonObject, record: JsonObject): FollowVerdict<JsonObject>;
}

export function followRequest(store: VmStore, f: RequestFollow): Promise<JsonObject> {
  let state = 'requested';
  return followRecord<JsonObject>(store.kv, {
    key: f.key,
    label: f.label,
    afterRevision: f.afterRevision,
    timeoutMs: f.timeoutMs,
    timedOut: () =>
      new DroverError(
        'TIMEOUT',
        `The ${f.what} of VM ${f.label} did not finish within ${Math.round(f.timeoutMs / 1000)} s (${state === 'requested' ? "not picked up yet: is its host's agent running?" : `state ${state}`}).`,
      ),
    onDelete: () => ({ fail: new DroverError('NOT_FOUND', `VM ${f.label} was deleted during its ${f.what}.`) }),
    onRecord: (record) => {
      const req = (record?.[f.field] ?? {}) as JsonObject;
      if (req.id !== f.id) return { fail: new DroverError('CONFLICT', `The ${f.what} of VM ${f.label} was replaced by another request.`) };
      state = typeof req.state === 'string' ? req.state : state;
      if (state === 'failed') {
        const why = typeof req.error === 'string' ? req.error.replace(/[.\s]+$/, '') : 'no reason given';
        return { fail: new DroverError(f.failCode, `The ${f.what} of VM ${f.label} failed: ${why}.`) };
      }
      return f.next(state, req, record ?? {});
    },
  });
}
