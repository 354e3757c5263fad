/**
 * The S3 boundary's one door: settings in, an `S3Client` out, and S3 errors
 * translated into DroverErrors in one place (STYLE.md 6).
 *
 * Works with AWS S3 and any S3-compatible server (MinIO, Ceph RGW, s3rver
 * in the tests): `endpoint` points elsewhere than AWS, `path_style` puts the
 * bucket in the path instead of the host name.
 *
 * Credentials: explicit ones (host config keys) win; without them the SDK's
 * default chain applies (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_PROFILE, ~/.aws, instance roles). Credentials never live in etcd.
 *
 * Checksums: the SDK would by default add CRC trailers (aws-chunked uploads)
 * to every upload, which many S3-compatible servers reject. We ask for them
 * only when an operation requires them; callers that want a part's checksum
 * verified pass `ChecksumAlgorithm` (or Content-MD5) on that command.
 */
import { S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { DroverError, errorMessage } from '../../lib/errors.js';
import type { S3Credentials, S3Location } from './location.js';

export { s3CredentialsFrom, s3LocationSchema, type S3Credentials, type S3Location } from './location.js';

export type S3Settings = S3Location & Readonly<{
  /** Absent: the SDK's default provider chain (AWS_* environment, profiles, roles). */
  credentials?: S3Credentials;
  /** Attempts per request for the SDK's own retries of throttling and 5xx (default 3). */
  maxAttempts?: number;
  /** Where the SDK's own log lines go; nowhere by default (errors reach callers, translated). */
  logger?: S3SdkLogger;
}>;

/** The SDK's logger shape (debug/info/warn/error). */
export interface S3SdkLogger {
  debug(...content: unknown[]): void;
  info(...content: unknown[]): void;
  warn(...content: unknown[]): void;
  error(...content: unknown[]): void;
}

/**
 * The SDK otherwise writes some warnings with console.warn (e.g. "An error
 * was encountered in a non-retryable streaming request."), which would
 * break the CLI's one-sentence stderr; the error itself still reaches us.
 */
const SILENT_SDK_LOGGER: S3SdkLogger = Object.freeze({ debug() {}, info() {}, warn() {}, error() {} });

/** Builds an S3Client for `settings`. One client per bucket location is enough for a process. */
export function createS3Client(settings: S3Settings): S3Client {
  // The SDK warns on stderr, once per process, that Node 20 support ends in
  // 2027; drover targets Node 20, and the warning would break the CLI's
  // one-sentence stderr. The SDK documents this variable to turn it off.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  return new S3Client({
    region: settings.region,
    ...(settings.endpoint !== undefined ? { endpoint: settings.endpoint } : {}),
    forcePathStyle: settings.path_style,
    ...(settings.credentials !== undefined ? { credentials: settings.credentials } : {}),
    maxAttempts: settings.maxAttempts ?? 3,
    logger: settings.logger ?? SILENT_SDK_LOGGER,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** The HTTP status of an S3 error, when it has one. */
export function s3StatusOf(err: unknown): number | undefined {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
  const meta = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return meta?.httpStatusCode;
}

/** True for "no such key/bucket" answers (404, NoSuchKey, NotFound). */
export function isS3NotFound(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return s3StatusOf(err) === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchBucket';
}

/**
 * Translates an SDK or network error into a DroverError with one sentence
 * naming `what` was being done (e.g. `put s3://bucket/key`). 5xx, throttling
 * and network faults are retryable; 4xx answers (bad credentials, no bucket)
 * are not. Already-translated errors pass through.
 */
export function translateS3Error(err: unknown, what: string): DroverError {
  if (err instanceof DroverError) return err;
  const status = s3StatusOf(err);
  const name = (err as { name?: string } | null)?.name ?? 'Error';
  if (isS3NotFound(err)) {
    return new DroverError('NOT_FOUND', `S3 ${what} failed: not found (${name}).`, false, { cause: err });
  }
  const detail = errorMessage(err).split('\n')[0]?.replace(/\.$/, '') || name;
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new DroverError('S3_ERROR', `S3 ${what} was refused (HTTP ${status}, ${name}): ${detail}.`, false, { cause: err });
  }
  const why = status !== undefined ? `HTTP ${status}, ${name}` : name;
  return new DroverError('S3_ERROR', `S3 ${what} failed (${why}): ${detail}.`, true, { cause: err });
}
