/**
 * Where `drover vm backup|restore` and `drover backup` find the bucket and
 * how they move data: flags, then DROVER_* environment, then the cluster's
 * backup store (`drover backup store set`), then defaults (docs/backups.md). Credentials only from the environment
 * (DROVER_S3_ACCESS_KEY_ID / DROVER_S3_SECRET_ACCESS_KEY) or the AWS SDK's
 * default chain, never from flags (they would show in `ps`).
 */
import { DroverError } from '../../lib/errors.js';
import { backupTransferSchema, backupTransferShape, type BackupTransferSettings } from '../../storage/backup-settings.js';
import { s3CredentialsFrom, s3LocationSchema, type S3Location, type S3Settings } from '../../storage/s3/client.js';
import { describeIssues } from '../../contract/vm-record.js';
import type { CliEnv } from '../context.js';

export interface S3Flags {
  s3Endpoint?: string;
  s3Bucket?: string;
  s3Region?: string;
  s3PathStyle?: boolean;
}

/** Whether the flags or the environment name a bucket (else the cluster's backup store applies). */
export function bucketGiven(flags: S3Flags, env: CliEnv): boolean {
  return (flags.s3Bucket ?? env.DROVER_S3_BUCKET ?? '') !== '';
}

/** The settings from flags and environment; without a bucket there, `stored` (the cluster's backup store) with the environment's credentials. */
export function resolveS3Settings(flags: S3Flags, env: CliEnv, stored: S3Location | null = null): S3Settings {
  const credentials = s3CredentialsFrom(env.DROVER_S3_ACCESS_KEY_ID, env.DROVER_S3_SECRET_ACCESS_KEY);
  if (!bucketGiven(flags, env)) {
    if (stored === null) throw new DroverError('USAGE', 'Backups need a bucket: give --s3-bucket, set DROVER_S3_BUCKET, or set the cluster\'s backup store (drover backup store set).');
    return { ...stored, ...(credentials !== undefined ? { credentials } : {}) };
  }
  const bucket = flags.s3Bucket ?? env.DROVER_S3_BUCKET;
  const endpoint = flags.s3Endpoint ?? env.DROVER_S3_ENDPOINT;
  const region = flags.s3Region ?? env.DROVER_S3_REGION;
  const r = s3LocationSchema.safeParse({
    bucket,
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(region !== undefined ? { region } : {}),
    path_style: flags.s3PathStyle ?? ['1', 'true', 'yes'].includes(env.DROVER_S3_PATH_STYLE ?? ''),
  });
  if (!r.success) throw new DroverError('USAGE', `The S3 settings are invalid: ${describeIssues(r.error.issues)}`);
  return { ...r.data, ...(credentials !== undefined ? { credentials } : {}) };
}

/** Each transfer key from DROVER_<KEY> (e.g. DROVER_S3_UPLOAD_CHUNK_SIZE=16777216), else its default. */
export function resolveTransferSettings(env: CliEnv): BackupTransferSettings {
  const input: Record<string, number> = {};
  for (const key of Object.keys(backupTransferShape)) {
    const v = env[`DROVER_${key.toUpperCase()}`];
    if (v !== undefined) input[key] = Number(v);
  }
  const r = backupTransferSchema.safeParse(input);
  if (!r.success) throw new DroverError('USAGE', `The transfer settings are invalid: ${describeIssues(r.error.issues)}`);
  return Object.freeze(r.data);
}
