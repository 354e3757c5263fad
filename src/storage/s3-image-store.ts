/**
 * An ImageStore in an S3 bucket (AWS or any S3-compatible server), through
 * the S3 boundary in s3/client.ts.
 *
 * One PutObject per image with its sha256 in the object's metadata
 * (`x-amz-meta-sha256`, what `aws s3api head-object` shows); the bytes are
 * hashed as they are sent and an upload that does not match is deleted and
 * refused. S3 makes an object visible only once its upload completed, so a
 * reader never sees half of one. A single PUT carries at most 5 GiB: bigger
 * images need multipart upload (docs/storage.md).
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
import { HashingStream } from './hashing-stream.js';
import { assertStoreKey, assertStorePrefix, checksumMismatch, type ImageStore, type PutOptions, type StoredObjectInfo } from './image-store.js';
import { isS3NotFound, translateS3Error } from './s3/client.js';

/** S3's limit for one PutObject. */
export const MAX_SINGLE_PUT_BYTES = 5 * 1024 ** 3;

export interface S3ImageStoreOptions {
  client: S3Client;
  bucket: string;
  /** Prepended to every key (e.g. "drover/"); none by default. */
  keyPrefix?: string;
}

export class S3ImageStore implements ImageStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly keyPrefix: string;

  constructor(opts: S3ImageStoreOptions) {
    this.client = opts.client;
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
    if (opts.size > MAX_SINGLE_PUT_BYTES) {
      throw new DroverError('IMAGE_ERROR', `The image is ${opts.size} bytes; one S3 upload takes at most 5 GiB, and multipart image uploads are not supported yet.`);
    }
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
    const info = await this.head(key);
    if (!info) throw new DroverError('S3_ERROR', `S3 says ${this.where(key)} does not exist right after it was uploaded.`, true);
    return info;
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
