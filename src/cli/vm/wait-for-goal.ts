/**
 * `--wait`: watches one VM key from a known revision until it reaches the
 * goal (a status, or deletion). Watching from the revision the CLI wrote (or
 * read) means no change in between is missed, and a stale RUNNING from
 * before a restart is never mistaken for the new one.
 */
import { DroverError } from '../../lib/errors.js';
import type { KvStore, WatchHandle } from '../../store/kv-store.js';
import { rawObject, type JsonObject } from '../../store/vm-repository.js';
import type { WaitGoal } from './status-plan.js';

const FAILED = new Set(['ERROR', 'KILLED']);

export interface WaitRequest {
  key: string;
  label: string;
  /** Events after this revision are considered. */
  afterRevision: string;
  /** The status at `afterRevision`; only changes from it are reported. */
  initialStatus: string;
  goal: WaitGoal;
  timeoutMs: number;
  /** Called with each new status seen. */
  onStatus(status: string): void;
}

/** Resolves with the final record, or null once the key is deleted (goal "deleted"). */
export function waitForGoal(kv: KvStore, req: WaitRequest): Promise<JsonObject | null> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let lastStatus = req.initialStatus;
    let handle: WatchHandle | null = null;
    const finish = (err: Error | null, value: JsonObject | null = null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const closing = handle ? handle.close() : Promise.resolve();
      void closing.finally(() => (err ? reject(err) : resolve(value)));
    };
    const timer = setTimeout(() => {
      const now = lastStatus ? `; its status is ${lastStatus}` : '';
      const target = req.goal === 'deleted' ? 'be deleted' : `reach ${req.goal}`;
      finish(new DroverError('TIMEOUT', `VM ${req.label} did not ${target} within ${Math.round(req.timeoutMs / 1000)} s${now}.`));
    }, req.timeoutMs);

    kv.watchPrefix(req.key, (BigInt(req.afterRevision) + 1n).toString(), {
      onEvent: (event) => {
        if (event.type === 'delete') {
          if (event.key !== req.key) return;
          if (req.goal === 'deleted') finish(null);
          else finish(new DroverError('NOT_FOUND', `VM ${req.label} was deleted while waiting for ${req.goal}.`));
          return;
        }
        if (event.entry.key !== req.key) return;
        const record = rawObject(event.entry.raw);
        const status = typeof record?.status === 'string' ? record.status : '';
        if (status !== lastStatus && status !== '') req.onStatus(status);
        lastStatus = status;
        if (status === req.goal) finish(null, record);
        else if (FAILED.has(status)) {
          const why = typeof record?.error === 'string' && record.error !== '' ? `: ${record.error}` : '';
          const code = req.goal === 'RUNNING' ? 'START_FAILED' : 'CONFLICT';
          finish(new DroverError(code, `VM ${req.label} ended in ${status}${why.replace(/[.\s]+$/, '')}.`));
        }
      },
      onBroken: (reason) => finish(new DroverError('ETCD_UNAVAILABLE', `The watch on VM ${req.label} broke (${reason}); check its status with \`drover vm get\`.`, true)),
    }).then(
      (h) => {
        handle = h;
        if (settled) void h.close();
      },
      (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
    );
  });
}
