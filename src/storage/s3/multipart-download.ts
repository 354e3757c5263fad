/**
 * Downloads one S3 object into a file with ranged GETs (chunter's
 * `s3_download_chunk_size`, `parallel_downloads`, `max_parallel_downloads`,
 * `preload`).
 *
 * Theory of operation: a HEAD gives the size and ETag; chunk i is the byte
 * range [i*chunkSize, (i+1)*chunkSize). GETs in flight follow
 * ParallelismGovernor, and no chunk more than `preload` chunks ahead of the
 * write position is asked for, so memory stays at `preload` chunks (a
 * `preload` below the parallelism caps it). Every GET carries If-Match with
 * the HEAD's ETag, so an object replaced mid-download fails instead of
 * mixing two versions; a chunk of the wrong length or a failed GET is asked
 * for again (multipart-retry.ts). Chunks are written in order to
 * `<dest>.partial` while their sha256 is computed; only when it equals
 * `sha256` is the file renamed to `dest`. A mismatch or a failure removes
 * the partial file: nothing half-written ever sits at `dest`.
 */
import { createHash } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DroverError } from '../../lib/errors.js';
import { translateS3Error } from './client.js';
import { ParallelismGovernor } from './multipart-parallelism.js';
import { retryS3 } from './multipart-retry.js';

export interface MultipartDownloadOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** Where the verified file ends up (its directory must exist). */
  dest: string;
  /** The object's sha256 (hex), e.g. from a backup manifest; checked before `dest` exists. */
  sha256: string;
  chunkSize: number;
  parallel: number;
  maxParallel: number;
  /** Chunks fetched ahead of the write position at most. */
  preload: number;
  chunkAttempts?: number;
  chunkTimeoutMs?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface DownloadResult {
  size: number;
  chunks: number;
  maxInFlight: number;
}

export async function downloadFileMultipart(opts: MultipartDownloadOptions): Promise<DownloadResult> {
  const where = `download of s3://${opts.bucket}/${opts.key}`;
  const attempts = opts.chunkAttempts ?? 5;
  const timeout = opts.chunkTimeoutMs ?? 120_000;
  const head = await retryS3((signal) => opts.client.send(new HeadObjectCommand({ Bucket: opts.bucket, Key: opts.key }), { abortSignal: signal }), where, attempts, timeout);
  const size = head.ContentLength ?? 0;
  const etag = head.ETag;
  const partial = `${opts.dest}.partial`;
  const fh = await open(partial, 'w');
  try {
    const result = await fetchChunks(opts, fh, size, etag, where, attempts, timeout);
    await fh.sync();
    await fh.close();
    if (result.sha256 !== opts.sha256) {
      throw new DroverError('CHECKSUM_MISMATCH', `S3 ${where} has sha256 ${result.sha256}, not the expected ${opts.sha256}; it was not used.`);
    }
    await rename(partial, opts.dest);
    return { size, chunks: result.chunks, maxInFlight: result.maxInFlight };
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  }
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function fetchChunks(
  opts: MultipartDownloadOptions,
  fh: FileHandle,
  size: number,
  etag: string | undefined,
  where: string,
  attempts: number,
  timeout: number,
): Promise<{ sha256: string; chunks: number; maxInFlight: number }> {
  const governor = new ParallelismGovernor({ initial: opts.parallel, max: opts.maxParallel });
  const preload = Math.max(1, opts.preload);
  const hash = createHash('sha256');
  const count = Math.ceil(size / opts.chunkSize);
  const ready = new Map<number, Buffer>();
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let next = 0;
  let written = 0;
  let done = 0;
  let maxInFlight = 0;
  while (written < count) {
    while (failure === undefined && next < count && inFlight.size < governor.limit && next < written + preload) {
      const i = next++;
      const start = i * opts.chunkSize;
      const length = Math.min(opts.chunkSize, size - start);
      const p: Promise<void> = fetchChunk(opts, start, length, etag, `chunk ${i + 1} of ${where}`, attempts, timeout)
        .then((buf) => {
          ready.set(i, buf);
          governor.partDone(length);
        })
        .catch((err: unknown) => {
          failure ??= err;
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
      maxInFlight = Math.max(maxInFlight, inFlight.size);
    }
    if (inFlight.size > 0) await Promise.race(inFlight);
    if (failure !== undefined) {
      await Promise.all(inFlight);
      throw failure;
    }
    for (let buf = ready.get(written); buf !== undefined; buf = ready.get(written)) {
      ready.delete(written);
      await fh.write(buf, 0, buf.length, written * opts.chunkSize);
      hash.update(buf);
      done += buf.length;
      written += 1;
      opts.onProgress?.(done, size);
    }
  }
  return { sha256: hash.digest('hex'), chunks: count, maxInFlight };
}

async function fetchChunk(
  opts: MultipartDownloadOptions,
  start: number,
  length: number,
  etag: string | undefined,
  what: string,
  attempts: number,
  timeout: number,
): Promise<Buffer> {
  return retryS3(
    async (signal) => {
      const out = await opts.client.send(
        new GetObjectCommand({ Bucket: opts.bucket, Key: opts.key, Range: `bytes=${start}-${start + length - 1}`, ...(etag !== undefined ? { IfMatch: etag } : {}) }),
        { abortSignal: signal },
      );
      if (out.Body === undefined) throw new DroverError('S3_ERROR', `S3 ${what} failed: the answer had no body.`, true);
      const bytes = await out.Body.transformToByteArray();
      const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength); // no copy
      if (buf.length !== length) throw new DroverError('S3_ERROR', `S3 ${what} returned ${buf.length} bytes, not ${length}.`, true);
      return buf;
    },
    what,
    attempts,
    timeout,
  ).catch((err: unknown) => {
    throw translateS3Error(err, what);
  });
}
