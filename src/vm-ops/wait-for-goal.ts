/**
 * `--wait`: watches one VM key from a known revision until it reaches the
 * goal (a status, or deletion). Watching from the revision the CLI wrote (or
 * read) means no change in between is missed, and a stale RUNNING from
 * before a restart is never mistaken for the new one.
 */
import { DroverError } from '../lib/errors.js';
import type { KvStore, WatchHandle } from '../store/kv-store.js';
import { rawObject, type JsonObject } from '../store/vm-repository.js';
import type { WaitGoal } from './status-plan.js';

const FAILED = new Set(['ERROR', 'KILLED']);

/** What a follower decides on each version of the record: keep watching (undefined), done, or failed. */
export type FollowVerdict<T> = undefined | { done: T } | { fail: Error };

export interface FollowRequest<T> {
  key: string;
  label: string;
  /** Events after this revision are considered. */
  afterRevision: string;
  timeoutMs: number;
  /** The error when the time is up. */
  timedOut(): Error;
  onRecord(record: JsonObject | null): FollowVerdict<T>;
  /** The key was deleted. */
  onDelete(): FollowVerdict<T> & object;
}

/** Watches one VM key from `afterRevision` until `onRecord`/`onDelete` decide, or the time is up. */
export function followRecord<T>(kv: KvStore, req: FollowRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let handle: WatchHandle | null = null;
    const settle = (verdict: FollowVerdict<T>) => {
      if (settled || verdict === undefined) return;
      settled = true;
      clearTimeout(timer);
      const closing = handle ? handle.close() : Promise.resolve();
      void closing.finally(() => ('fail' in verdict ? reject(verdict.fail) : resolve(verdict.done)));
    };
    const timer = setTimeout(() => settle({ fail: req.timedOut() }), req.timeoutMs);

    kv.watchPrefix(req.key, (BigInt(req.afterRevision) + 1n).toString(), {
      onEvent: (event) => {
        if (event.type === 'delete') {
          if (event.key === req.key) settle(req.onDelete());
          return;
        }
        if (event.entry.key === req.key) settle(req.onRecord(rawObject(event.entry.raw)));
      },
      onBroken: (reason) =>
        settle({ fail: new DroverError('ETCD_UNAVAILABLE', `The watch on VM ${req.label} broke (${reason}); check its status with \`drover vm get\`.`, true) }),
    }).then(
      (h) => {
        handle = h;
        if (settled) void h.close();
      },
      (err: unknown) => settle({ fail: err instanceof Error ? err : new Error(String(err)) }),
    );
  });
}

export interface WaitRequest {
  key: string;
  label: string;
  /** Events after this revision are considered. */
  afterRevision: string;
  /** The status at `afterRevision`; only changes from it are reported. */
  initialStatus: string;
  /** A status, or 'deleted'. */
  goal: WaitGoal | string;
  timeoutMs: number;
  /** Called with each new status seen. */
  onStatus(status: string): void;
}

/** Resolves with the final record, or null once the key is deleted (goal "deleted"). */
export function waitForGoal(kv: KvStore, req: WaitRequest): Promise<JsonObject | null> {
  let lastStatus = req.initialStatus;
  return followRecord<JsonObject | null>(kv, {
    key: req.key,
    label: req.label,
    afterRevision: req.afterRevision,
    timeoutMs: req.timeoutMs,
    timedOut: () => {
      const now = lastStatus ? `; its status is ${lastStatus}` : '';
      const target = req.goal === 'deleted' ? 'be deleted' : `reach ${req.goal}`;
      return new DroverError('TIMEOUT', `VM ${req.label} did not ${target} within ${Math.round(req.timeoutMs / 1000)} s${now}.`);
    },
    onDelete: () =>
      req.goal === 'deleted' ? { done: null } : { fail: new DroverError('NOT_FOUND', `VM ${req.label} was deleted while waiting for ${req.goal}.`) },
    onRecord: (record) => {
      const status = typeof record?.status === 'string' ? record.status : '';
      if (status !== lastStatus && status !== '') req.onStatus(status);
      lastStatus = status;
      if (status === req.goal) return { done: record };
      if (!FAILED.has(status)) return undefined;
      const why = typeof record?.error === 'string' && record.error !== '' ? `: ${record.error}` : '';
      const code = req.goal === 'RUNNING' ? 'START_FAILED' : 'CONFLICT';
      return { fail: new DroverError(code, `VM ${req.label} ended in ${status}${why.replace(/[.\s]+$/, '')}.`) };
    },
  });
}
