/**
 * Where an S3 bucket is and whose credentials open it: the parts of the S3
 * settings that config and CLI code parse, without loading the AWS SDK
 * (s3/client.ts re-exports them beside createS3Client).
 */
import { z } from 'zod';
import { DroverError } from '../../lib/errors.js';

/** Where a bucket is and how to address it; no credentials (those are per host). */
export const s3LocationSchema = z.strictObject({
  /** Custom endpoint URL (http(s)://host:port); absent means AWS for `region`. */
  endpoint: z.url({ protocol: /^https?$/ }).optional(),
  region: z.string().min(1).default('us-east-1'),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
  /** Bucket in the path (http://endpoint/bucket/key), as most S3-compatible servers want. */
  path_style: z.boolean().default(false),
});
export type S3Location = Readonly<z.infer<typeof s3LocationSchema>>;

/** Credentials from a host's config; both or neither. */
export type S3Credentials = Readonly<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }>;

/** Credentials from config values: both given, neither given (default chain), or an error. */
export function s3CredentialsFrom(accessKeyId: string | undefined, secretAccessKey: string | undefined): S3Credentials | undefined {
  if (accessKeyId === undefined && secretAccessKey === undefined) return undefined;
  if (accessKeyId === undefined || secretAccessKey === undefined || accessKeyId === '' || secretAccessKey === '') {
    throw new DroverError('CONFIG_INVALID', 'S3 credentials need both s3_access_key_id and s3_secret_access_key (or neither, to use the AWS_* environment).');
  }
  return { accessKeyId, secretAccessKey };
}
