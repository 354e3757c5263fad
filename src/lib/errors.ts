/**
 * Errors with stable codes that say whether a retry can help (STYLE.md 6).
 * Foreign errors (etcd, QMP, spawn) are translated once, at their boundary,
 * into one of these.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'USAGE'
  | 'NOT_FOUND'
  | 'AMBIGUOUS'
  | 'CONFLICT'
  | 'ETCD_UNAVAILABLE'
  | 'HOST_NAME_TAKEN'
  | 'STATE_DIR_LOCKED'
  | 'QMP_ERROR'
  | 'QMP_CLOSED'
  | 'SPAWN_FAILED'
  | 'START_FAILED'
  | 'INVALID_SPEC'
  | 'MIGRATION_FAILED'
  | 'SNAPSHOT_FAILED'
  | 'BACKUP_FAILED'
  | 'TIMEOUT'
  | 'S3_ERROR'
  | 'CHECKSUM_MISMATCH'
  | 'IMAGE_ERROR'
  | 'IO_ERROR'
  /** No valid credentials (HTTP 401). */
  | 'UNAUTHORIZED'
  /** Valid credentials without the privilege, or a field the role may not set (HTTP 403). */
  | 'FORBIDDEN'
  /** Too many failed logins (HTTP 429). */
  | 'THROTTLED';

export class DroverError extends Error {
  override readonly name: string = 'DroverError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** True when the same call may succeed later (a network fault, a race). */
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An error that no retry can fix: the worker records it and stops trying. */
export function isTerminal(err: unknown): boolean {
  return err instanceof DroverError && !err.retryable;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Makes a message one sentence: trimmed, first line only, ending in a full stop. */
export function oneSentence(text: string): string {
  const line = text.trim().split('\n').find((l) => l.trim() !== '') ?? 'unknown error';
  const t = line.trim();
  return /[.!?]$/.test(t) ? t : `${t}.`;
}
