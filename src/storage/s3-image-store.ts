/**
 * An ImageStore in an S3 bucket (AWS or any S3-compatible server), through
 * the S3 boundary in s3/client.ts.
 *
 * The image's sha256 goes in the object's metadata (`x-amz-meta-sha256`,
 * what `aws s3api head-object` shows), and the bytes are hashed as they are
 * sent. An image of one part or less is one PutObject (deleted and refused
 * if it does not match); a bigger one is a multipart upload
 * (s3/multipart-upload.ts: Content-MD5 per part, retries, adaptive
 * parallelism), checked before it is completed, so a mismatch or a failure
 * aborts it and no object ever appears. S3 makes an object visible only once
 * its upload completed, so a reader never sees half of one.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { DroverError } from '../lib/errors.js';
import { DEFAULT_BACKUP_TRANSFER } from './backup-settings.js';
import { HashingStream } from './hashing-stream.js';
import { assertStoreKey, assertStorePrefix, checksumMismatch, type ImageStore, type PutOptions, type StoredObjectInfo } from './image-store.js';
import { isS3NotFound, translateS3Error } from './s3/client.js';
import { uploadStreamMultipart } from './s3/multipart-upload.js';

/** S3's limit on the parts of one multipart upload. */
const MAX_PARTS = 10_000;
const MiB = 1024 * 1024;

/** How images are uploaded: the backup keys of the same names (docs/backups.md). */
export interface ImageUploadSettings {
  /** Bytes per part; raised (to whole MiB) when an image would need more than 10 000 parts. */
  s3_upload_chunk_size: number;
  parallel_uploads: number;
  max_parallel_uploads: number;
  /** Milliseconds one part may take before it is tried again (120 000). */
  partTimeoutMs?: number;
}

export interface S3ImageStoreOptions {
  client: S3Client;
  bucket: string;
  /** Prepended to every key (e.g. "drover/"); none by default. */
  keyPrefix?: string;
  /** Chunter's defaults (5 MiB parts, 5 rising to 10 in flight) when absent. */
  upload?: ImageUploadSettings;
}

/** The part size for an image of `size` bytes: the setting, or bigger to stay within S3's 10 000 parts. */
export function imagePartSize(size: number, chunkSize: number): number {
  const needed = Math.ceil(size / MAX_PARTS);
  return needed <= chunkSize ? chunkSize : Math.ceil(needed / MiB) * MiB;
}

export class S3ImageStore implements ImageStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly keyPrefix: string;
  private readonly upload: ImageUploadSettings;

  constructor(opts: S3ImageStoreOptions) {
    this.client = opts.client;
    this.upload = opts.upload ?? DEFAULT_BACKUP_TRANSFER;
    this.bucket = opts.bucket;
    this.keyPrefix = opts.keyPrefix ?? '';
    if (this.keyPrefix !== '') assertStorePrefix(this.keyPrefix);
    this.description = `s3://${this.bucket}/${this.keyPrefix}`;
  }

  private objectKey(key: string): string {
    assertStoreKey(key);
    return this.keyPrefix + key;
  }

  private where(key: string): string {
    return `s3://${this.bucket}/${this.keyPrefix}${key}`;
  }

  async put(key: string, body: Readable, opts: PutOptions): Promise<StoredObjectInfo> {
    const Key = this.objectKey(key);
    const partSize = imagePartSize(opts.size, this.upload.s3_upload_chunk_size);
    if (opts.size > partSize) await this.putMultipart(key, Key, body, opts, partSize);
    else await this.putSingle(key, Key, body, opts);
    const info = await this.head(key);
    if (!info) throw new DroverError('S3_ERROR', `S3 says ${this.where(key)} does not exist right after it was uploaded.`, true);
    return info;
  }

  /**
   * More than one part: a multipart upload from the stream. The size and
   * sha256 are checked before the upload is completed, so refused bytes
   * never become an object (the upload is aborted).
   */
  private async putMultipart(key: string, Key: string, body: Readable, opts: PutOptions, partSize: number): Promise<void> {
    const hasher = new HashingStream(undefined, opts.size);
    body.on('error', (err) => hasher.destroy(err));
    body.pipe(hasher);
    try {
      await uploadStreamMultipart(
        {
          client: this.client,
          bucket: this.bucket,
          key: Key,
          chunkSize: partSize,
          parallel: this.upload.parallel_uploads,
          maxParallel: this.upload.max_parallel_uploads,
          ...(this.upload.partTimeoutMs !== undefined ? { partTimeoutMs: this.upload.partTimeoutMs } : {}),
          metadata: { sha256: opts.sha256 },
          ...(opts.onProgress ? { onProgress: (done: number) => opts.onProgress?.(done) } : {}),
          verify: (sent) => {
            if (sent.sha256 !== opts.sha256) throw checksumMismatch(`The upload of ${key}`, opts, sent);
          },
        },
        hasher,
        opts.size,
      );
    } catch (err) {
      if (hasher.destroyed && hasher.errored) {
        throw new DroverError('IMAGE_ERROR', `The upload of ${key} to ${this.where(key)} failed: ${hasher.errored.message}.`, false, { cause: err });
      }
      throw err;
    } finally {
      hasher.destroy();
    }
  }

  /** One part or less: one PutObject. */
  private async putSingle(key: string, Key: string, body: Readable, opts: PutOptions): Promise<void> {
    const hasher = new HashingStream(opts.onProgress, opts.size);
    // The HTTP request does not notice its body failing (pipe() does not
    // forward errors) and would wait for the missing bytes: abort it.
    const abort = new AbortController();
    body.on('error', (err) => hasher.destroy(err));
    hasher.on('error', () => abort.abort()); // the cause is read below through hasher.errored
    body.pipe(hasher);
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body: hasher, ContentLength: opts.size, Metadata: { sha256: opts.sha256 } }),
        { abortSignal: abort.signal },
      );
    } catch (err) {
      // S3 never completes an object whose upload failed, but some
      // S3-compatible servers (s3rver) keep what they received: remove it.
      // Image keys are written once, so there is no older object to lose.
      await this.delete(key).catch(() => undefined);
      if (hasher.destroyed && hasher.errored) {
        throw new DroverError('IMAGE_ERROR', `The upload of ${key} to ${this.where(key)} failed: ${hasher.errored.message}.`, false, { cause: err });
      }
      throw translateS3Error(err, `upload of ${this.where(key)}`);
    }
    const got = { size: hasher.bytes, sha256: hasher.digest() };
    if (got.size !== opts.size || got.sha256 !== opts.sha256) {
      await this.delete(key);
      throw checksumMismatch(`The upload of ${key}`, opts, got);
    }
  }

  async get(key: string): Promise<{ info: StoredObjectInfo; body: Readable }> {
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      throw translateS3Error(err, `download of ${this.where(key)}`);
    }
    const info = this.info(key, res);
    return { info, body: res.Body as Readable };
  }

  async head(key: string): Promise<StoredObjectInfo | null> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return this.info(key, res);
    } catch (err) {
      if (isS3NotFound(err)) return null;
      throw translateS3Error(err, `head of ${this.where(key)}`);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    } catch (err) {
      if (isS3NotFound(err)) return;
      throw translateS3Error(err, `delete of ${this.where(key)}`);
    }
  }

  async list(prefix: string): Promise<StoredObjectInfo[]> {
    assertStorePrefix(prefix);
    const out: StoredObjectInfo[] = [];
    let token: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.keyPrefix + prefix, ...(token !== undefined ? { ContinuationToken: token } : {}) }),
        );
      } catch (err) {
        throw translateS3Error(err, `list of ${this.where(prefix)}`);
      }
      for (const o of res.Contents ?? []) {
        if (o.Key === undefined) continue;
        out.push({ key: o.Key.slice(this.keyPrefix.length), size: o.Size ?? 0, etag: o.ETag ?? '', lastModified: o.LastModified ?? new Date(0) });
      }
      token = res.IsTruncated === true ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private info(key: string, res: { ContentLength?: number; ETag?: string; LastModified?: Date; Metadata?: Record<string, string> }): StoredObjectInfo {
    const sha = res.Metadata?.['sha256'];
    return {
      key,
      size: res.ContentLength ?? 0,
      etag: res.ETag ?? '',
      lastModified: res.LastModified ?? new Date(0),
      ...(sha !== undefined ? { sha256: sha } : {}),
    };
  }
}
