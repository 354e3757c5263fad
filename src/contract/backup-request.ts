/**
 * A backup or restore asked for through the VM record (docs/backups.md,
 * "Through the API"), carried out by the agent of the VM's host, which
 * holds the disks: `backup_request` is the one operation asked for and its
 * outcome, as `snapshot_request` is for snapshots.
 *
 * `requested` (the API) → `running` (the agent claimed it; `host` says
 * which) → `done` | `failed`. While it runs, the agent writes `progress`
 * (at most once a second). `op` is a plain string on purpose: a hostile
 * request fails with a sentence in `error` instead of making the record
 * invalid.
 */
import { z } from 'zod';

export const BACKUP_OPS = ['backup', 'restore'] as const;
export type BackupOp = (typeof BACKUP_OPS)[number];

export const BACKUP_REQUEST_STATES = ['requested', 'running', 'done', 'failed'] as const;

/** A backup's name: letters, digits and "-_.:", 1 to 64, starting with a letter or digit. */
export const BACKUP_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

export const backupRequestSchema = z.looseObject({
  op: z.string().max(64),
  /** Names this request, so the one who asked can tell its outcome from a later request's. */
  id: z.string().max(64),
  state: z.enum(BACKUP_REQUEST_STATES).default('requested'),
  requested_at: z.string().optional(),
  /** The user who asked (through the API). */
  requestor: z.string().optional(),
  /** backup: the name to give it (default: its id). */
  name: z.string().max(1024).optional(),
  /** restore: the id or unique name of one of this VM's backups. */
  backup: z.string().max(1024).optional(),
  /** The host whose agent claimed the request. */
  host: z.string().optional(),
  started_at: z.string().optional(),
  /** A running backup's temporary snapshot (deleted when it ends). */
  snapshot: z.string().optional(),
  progress: z.object({ what: z.string(), done: z.number(), total: z.number() }).optional(),
  /** done: the backup made or restored. */
  result: z.object({ id: z.string(), name: z.string(), size: z.number() }).optional(),
  error: z.string().optional(),
  finished_at: z.string().optional(),
});
export type BackupRequest = z.infer<typeof backupRequestSchema>;

/** A request no agent has finished yet (no state means `requested`). */
export function isActiveBackupRequest(req: unknown): req is { op?: unknown; state?: unknown; requested_at?: unknown } {
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return false;
  const state = (req as { state?: unknown }).state;
  return state === undefined || state === 'requested' || state === 'running';
}
