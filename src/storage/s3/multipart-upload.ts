/**
 * Uploads one file to S3 as a multipart upload (chunter's
 * `s3_upload_chunk_size`, `parallel_uploads`, `max_parallel_uploads`).
 *
 * Theory of operation: the file is read once, in order, one `chunkSize`
 * part at a time (so its sha256 comes for free); each part is sent with its
 * Content-MD5, which the server checks, and the ETag it answers must be that
 * same MD5 (servers that answer something else, e.g. SSE-KMS, are trusted on
 * their Content-MD5 check alone). Parts in flight follow
 * ParallelismGovernor; a part that fails (network cut, 5xx, a wrong ETag,
 * no answer within `partTimeoutMs`) is sent again, up to `partAttempts`
 * times with a doubling pause: that is how an interrupted upload resumes.
 * When a part runs out of attempts the upload is aborted (best effort:
 * AbortMultipartUpload; S3 never shows an uncompleted upload as an object
 * anyway) and the error thrown. Memory: at most `maxParallel` parts.
 *
 * The source is a file (`uploadFileMultipart`, backups) or a stream of a
 * declared size (`uploadStreamMultipart`, image uploads); either way the
 * parts are read in order, and a `verify` hook sees the size and sha256
 * before the upload is completed, so bytes it refuses never become an
 * object.
 *
 * Payload signing: UploadPart sends `x-amz-content-sha256: UNSIGNED-PAYLOAD`
 * (see `unsignedPayload` below), which spares the SDK's SigV4 signer a
 * sha256 of every part; the part stays verified by its Content-MD5 (a signed
 * header) and the ETag check.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { DroverError } from '../../lib/errors.js';
import { translateS3Error } from './client.js';
import { ParallelismGovernor } from './multipart-parallelism.js';
import { retryS3 } from './multipart-retry.js';

export interface MultipartTarget {
  client: S3Client;
  bucket: string;
  key: string;
  chunkSize: number;
  parallel: number;
  maxParallel: number;
  /** Tries per part (default 5). */
  partAttempts?: number;
  /** Milliseconds a part may take before it is cut and tried again (default 120 000). */
  partTimeoutMs?: number;
  contentType?: string;
  /** Called after each part lands, with the bytes uploaded so far. */
  onProgress?: (done: number, total: number) => void;
  /** User metadata of the object (x-amz-meta-*). */
  metadata?: Record<string, string>;
  /** Sees what was sent before the upload is completed; what it throws aborts the upload. */
  verify?: (sent: { size: number; sha256: string }) => void;
}

export interface MultipartUploadOptions extends MultipartTarget {
  /** The file to upload. */
  file: string;
}

/** Reads the source's bytes [offset, offset + length), called in order. */
type PartReader = (offset: number, length: number) => Promise<Buffer>;

/** Takes back a part's buffer once its upload settled (the reader may reuse it). */
type PartRecycler = (body: Buffer) => void;

export interface UploadResult {
  size: number;
  sha256: string;
  parts: number;
  /** The highest parallelism reached. */
  maxInFlight: number;
}

export async function uploadFileMultipart(opts: MultipartUploadOptions): Promise<UploadResult> {
  const fh = await open(opts.file, 'r');
  try {
    const size = (await fh.stat()).size;
    // Part buffers are reused (at most max_parallel + 1 of them): a fresh
    // chunk-sized buffer per part costs page faults and GC on every byte.
    const pool: Buffer[] = [];
    const read: PartReader = async (offset, length) => {
      const body = length === opts.chunkSize ? (pool.pop() ?? Buffer.allocUnsafe(length)) : Buffer.allocUnsafe(length); // every byte is read into it, or it is refused
      const { bytesRead } = await fh.read(body, 0, length, offset);
      if (bytesRead !== length) throw new DroverError('S3_ERROR', `S3 upload of s3://${opts.bucket}/${opts.key} failed: ${opts.file} changed size while it was read.`);
      return body;
    };
    return await uploadMultipart(opts, size, read, (body) => {
      if (body.length === opts.chunkSize) pool.push(body);
    });
  } finally {
    await fh.close();
  }
}

/**
 * Uploads `size` bytes read from `body`. A stream that ends early or fails
 * fails the upload with its error; one with bytes beyond `size` fails too
 * (the caller may pass it through a HashingStream with the expected size,
 * which says so in one sentence).
 */
export async function uploadStreamMultipart(opts: MultipartTarget, body: Readable, size: number): Promise<UploadResult> {
  // The iterator listens for errors only from its first read on (after the
  // upload is created): until then this keeps an error from going uncaught.
  // The reader below still sees it (the stream is errored).
  body.on('error', () => undefined);
  const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  const take = async (length: number): Promise<Buffer> => {
    const parts: Buffer[] = [pending];
    let have = pending.length;
    while (have < length && !ended) {
      const next = await chunks.next();
      if (next.done === true) ended = true;
      else {
        const b = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
        parts.push(b);
        have += b.length;
      }
    }
    const all = Buffer.concat(parts, have);
    pending = all.subarray(Math.min(length, have));
    return all.subarray(0, Math.min(length, have));
  };
  const where = `upload of s3://${opts.bucket}/${opts.key}`;
  return uploadMultipart(opts, size, async (offset, length) => {
    const part = await take(length);
    if (part.length !== length) throw new DroverError('S3_ERROR', `S3 ${where} failed: the source ended after ${offset + part.length} of the ${size} bytes expected.`, false);
    if (offset + length === size && (await take(1)).length > 0) throw new DroverError('S3_ERROR', `S3 ${where} failed: the source has more than the ${size} bytes expected.`, false);
    return part;
  });
}

async function uploadMultipart(opts: MultipartTarget, size: number, readPart: PartReader, recycle?: PartRecycler): Promise<UploadResult> {
  const where = `upload of s3://${opts.bucket}/${opts.key}`;
  const created = await opts.client
    .send(
      new CreateMultipartUploadCommand({
        Bucket: opts.bucket,
        Key: opts.key,
        ContentType: opts.contentType ?? 'application/octet-stream',
        ...(opts.metadata !== undefined ? { Metadata: opts.metadata } : {}),
      }),
    )
    .catch((err: unknown) => {
      throw translateS3Error(err, where);
    });
  const uploadId = created.UploadId;
  if (uploadId === undefined) throw new DroverError('S3_ERROR', `S3 ${where} failed: the server gave no upload id.`, true);
  try {
    const result = await sendParts(opts, readPart, size, uploadId, recycle);
    opts.verify?.({ size, sha256: result.sha256 });
    await retryS3(
      (signal) =>
        opts.client.send(
          new CompleteMultipartUploadCommand({ Bucket: opts.bucket, Key: opts.key, UploadId: uploadId, MultipartUpload: { Parts: result.completed } }),
          { abortSignal: signal },
        ),
      `completion of ${where}`,
      opts.partAttempts ?? 5,
      opts.partTimeoutMs ?? 120_000,
    );
    return { size, sha256: result.sha256, parts: result.completed.length, maxInFlight: result.maxInFlight };
  } catch (err) {
    // Best effort, bounded: the network that failed the parts may be gone too.
    await opts.client
      .send(new AbortMultipartUploadCommand({ Bucket: opts.bucket, Key: opts.key, UploadId: uploadId }), { abortSignal: AbortSignal.timeout(opts.partTimeoutMs ?? 120_000) })
      .catch(() => undefined);
    throw err;
  }
}

async function sendParts(
  opts: MultipartTarget,
  readPart: PartReader,
  size: number,
  uploadId: string,
  recycle: PartRecycler | undefined,
): Promise<{ completed: CompletedPart[]; sha256: string; maxInFlight: number }> {
  const governor = new ParallelismGovernor({ initial: opts.parallel, max: opts.maxParallel });
  const hash = createHash('sha256');
  const count = Math.max(1, Math.ceil(size / opts.chunkSize));
  const completed: CompletedPart[] = new Array<CompletedPart>(count);
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let done = 0;
  let maxInFlight = 0;
  for (let i = 0; i < count && failure === undefined; i++) {
    while (inFlight.size >= governor.limit) await Promise.race(inFlight);
    if (failure !== undefined) break;
    const offset = i * opts.chunkSize;
    const length = Math.min(opts.chunkSize, size - offset);
    let body: Buffer;
    try {
      body = await readPart(offset, length);
    } catch (err) {
      await Promise.all(inFlight); // settle the parts in flight before the upload is aborted
      throw err;
    }
    hash.update(body);
    const partNumber = i + 1;
    const p: Promise<void> = sendPart(opts, uploadId, partNumber, body)
      .then((etag) => {
        completed[i] = { PartNumber: partNumber, ETag: etag };
        recycle?.(body); // the request is over: nothing reads the buffer any more
        done += length;
        governor.partDone(length);
        opts.onProgress?.(done, size);
      })
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    maxInFlight = Math.max(maxInFlight, inFlight.size);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
  return { completed, sha256: hash.digest('hex'), maxInFlight };
}

async function sendPart(opts: MultipartTarget, uploadId: string, partNumber: number, body: Buffer): Promise<string> {
  const where = `upload of s3://${opts.bucket}/${opts.key}`;
  const md5 = createHash('md5').update(body);
  const md5Hex = md5.copy().digest('hex');
  const md5B64 = md5.digest('base64');
  const what = `part ${partNumber} of ${where}`;
  return retryS3(
    async (signal) => {
      const command = new UploadPartCommand({ Bucket: opts.bucket, Key: opts.key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentMD5: md5B64, ContentLength: body.length });
      // Build step: after the request is serialized (endpoint known), before it is signed.
      command.middlewareStack.add((next) => async (args) => {
        unsignPayload(args.request);
        return next(args);
      }, { step: 'build', name: 'droverUnsignedPayload' });
      const out = await opts.client.send(command, { abortSignal: signal });
      const etag = out.ETag;
      if (etag === undefined) throw new DroverError('S3_ERROR', `S3 ${what} failed: the server gave no ETag.`, true);
      const plain = etag.replace(/"/g, '').toLowerCase();
      if (/^[0-9a-f]{32}$/.test(plain) && plain !== md5Hex) {
        throw new DroverError('CHECKSUM_MISMATCH', `S3 ${what} came back with ETag ${plain}, not the part's MD5 ${md5Hex}.`, true);
      }
      return etag;
    },
    what,
    opts.partAttempts ?? 5,
    opts.partTimeoutMs ?? 120_000,
  );
}

/** The value of `x-amz-content-sha256` that tells SigV4 the payload is not part of the signature. */
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/**
 * True when a part sent to `protocol`//`hostname` may go with an unsigned
 * payload: always over https (as the AWS SDKs for Java and Go do; TLS
 * protects the bytes), and over plain http only to a server that is not
 * AWS's (s3rver, MinIO, Ceph RGW accept it; the Content-MD5 header, which is
 * signed, still covers the bytes). Plain http to *.amazonaws.com(.cn) keeps
 * the signed payload, as every AWS SDK does over http.
 */
export function mayUnsignPayload(protocol: string, hostname: string): boolean {
  if (protocol === 'https:' || protocol === 'https') return true;
  return !/(^|\.)amazonaws\.com(\.cn)?$/i.test(hostname.replace(/\.$/, ''));
}

/** Marks an UploadPart request's payload unsigned when mayUnsignPayload allows it; the SDK's signer then uses this header instead of hashing the body. */
function unsignPayload(req: unknown): void {
  const request = req as { protocol?: string; hostname?: string; headers?: Record<string, string> };
  if (request.headers !== undefined && mayUnsignPayload(request.protocol ?? '', request.hostname ?? '')) {
    request.headers['x-amz-content-sha256'] = UNSIGNED_PAYLOAD;
  }
}
