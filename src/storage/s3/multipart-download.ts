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
 * for again (multipart-retry.ts). Each body is read straight into a chunk
 * buffer (a pool of at most `preload` buffers, reused), and written to
 * `<dest>.partial` at its offset as soon as it arrives, while the other GETs
 * stay in flight; the sha256 is fed in order from the buffers, on a worker
 * thread (hash-worker.ts; the pool is SharedArrayBuffer memory, so nothing
 * is copied), and a buffer goes back to the pool once it is both written
 * and hashed. So one slow chunk
 * holds up nothing but the buffers behind it, never the requests or the
 * writes. Whole aligned chunks are written with O_DIRECT where the
 * filesystem allows it (PartialFile below), the rest through the page
 * cache. The file is fsynced, and only when its sha256 equals `sha256` is
 * it renamed to `dest`. A mismatch or a failure removes the partial file:
 * nothing half-written ever sits at `dest`.
 */
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { DroverError } from '../../lib/errors.js';
import { translateS3Error } from './client.js';
import { WorkerSha256 } from './hash-worker.js';
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
  /** Chunks held in memory at most (fetched, not yet both written and hashed); caps the GETs in flight too. */
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
  const hash = new WorkerSha256();
  let file: PartialFile | undefined;
  try {
    const fh = await open(partial, 'w');
    file = { path: partial, fh, direct: null };
    file.direct = await openDirect(partial);
    const result = await fetchChunks(opts, file, hash, size, etag, where, attempts, timeout);
    await file.direct?.close(); // closed here only: no write is in flight any more
    await fh.sync();
    await fh.close();
    if (result.sha256 !== opts.sha256) {
      throw new DroverError('CHECKSUM_MISMATCH', `S3 ${where} has sha256 ${result.sha256}, not the expected ${opts.sha256}; it was not used.`);
    }
    await rename(partial, opts.dest);
    await syncDir(dirname(opts.dest));
    return { size, chunks: result.chunks, maxInFlight: result.maxInFlight };
  } catch (err) {
    await file?.direct?.close().catch(() => undefined);
    await file?.fh.close().catch(() => undefined);
    await rm(partial, { force: true }).catch(() => undefined); // the first error is the one to report
    throw err;
  } finally {
    await hash.close();
  }
}

/** Makes a rename in `dir` durable, where the filesystem lets a directory be fsynced (not all do; the file itself is already synced). */
async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r').catch(() => null);
  if (d === null) return;
  await d.sync().catch(() => undefined);
  await d.close().catch(() => undefined);
}

type FileHandle = Awaited<ReturnType<typeof open>>;

/**
 * The partial file, twice: `fh` (buffered) and, where the filesystem allows
 * it, `direct` (O_DIRECT). Whole aligned chunks go through `direct`, from
 * the page-aligned pool straight to the device: no copy into the page cache
 * (on this project's test VMs, whose balloon hands freed guest pages back to
 * the host, filling fresh page cache costs ~3 s of system CPU per GiB), and
 * nothing dirty left for the final fsync. The unaligned tail, and every
 * write after O_DIRECT once refuses one (EINVAL), go through `fh`. The fsync
 * of `fh` before the rename covers both: fsync flushes the file (its inode),
 * whichever descriptor wrote it.
 */
interface PartialFile {
  path: string;
  fh: FileHandle;
  direct: FileHandle | null;
}

/** Logical block alignment O_DIRECT needs for offsets, lengths and memory (4096 covers every common device). */
const DIRECT_ALIGN = 4096;

/** Opens `file` again with O_DIRECT, or null where that is refused (tmpfs, some network filesystems) or unknown. */
async function openDirect(file: string): Promise<FileHandle | null> {
  if (constants.O_DIRECT === undefined) return null;
  try {
    return await open(file, constants.O_WRONLY | constants.O_DIRECT);
  } catch {
    return null;
  }
}

/**
 * A chunk buffer whose memory starts on a page boundary (O_DIRECT needs
 * aligned memory; ordinary ArrayBuffers come from malloc, 16 bytes past a
 * page). Shared WebAssembly memory is page-aligned and is a
 * SharedArrayBuffer, which the hash worker reads without a copy.
 */
function alignedSharedBuffer(bytes: number): Buffer {
  const pages = Math.max(1, Math.ceil(bytes / 65_536));
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    // V8 reserves ~10 GiB of address space per wasm memory (guard regions), which
    // a limit on it (ulimit -v, systemd LimitAS=) can refuse: a plain
    // SharedArrayBuffer then, not known to be aligned, so its chunks are written buffered.
    return Buffer.from(new SharedArrayBuffer(bytes), 0, bytes);
  }
  PAGE_ALIGNED.add(memory.buffer);
  return Buffer.from(memory.buffer, 0, bytes);
}

/** The buffers alignedSharedBuffer got from WebAssembly memory: they start on a page boundary. */
const PAGE_ALIGNED = new WeakSet<ArrayBufferLike>();

/**
 * Writes all of `chunk` at `position`: through O_DIRECT when it can, else
 * buffered (and O_DIRECT is given up after an EINVAL). A short write (Node
 * reports one, without an error, when the kernel's retry of it fails: a full
 * disk, a file size limit) is continued buffered, so its error surfaces; the
 * sha256 is of the bytes received, so a file with a hole must never get this far.
 */
async function writeChunk(file: PartialFile, chunk: Buffer, position: number): Promise<void> {
  const direct = file.direct;
  let at = 0;
  try {
    if (direct !== null && position % DIRECT_ALIGN === 0 && chunk.length % DIRECT_ALIGN === 0 && chunk.byteOffset % DIRECT_ALIGN === 0 && PAGE_ALIGNED.has(chunk.buffer)) {
      try {
        at = (await direct.write(chunk, 0, chunk.length, position)).bytesWritten;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        file.direct = null; // other writes may still be using it; downloadFileMultipart closes it
      }
    }
    while (at < chunk.length) {
      const { bytesWritten } = await file.fh.write(chunk, at, chunk.length - at, position + at);
      if (bytesWritten === 0) throw Object.assign(new Error('the write made no progress'), { code: 'EIO' });
      at += bytesWritten;
    }
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOSPC' ? 'no space left on the device' : e.code === 'EFBIG' ? 'the file would exceed the size limit' : e.message.replace(/^[A-Z]+: /, '');
    throw new DroverError('IO_ERROR', `Writing ${file.path} at byte ${position + at} failed: ${why} (${e.code ?? 'error'}).`, false, { cause: err });
  }
}

/** Bytes written between two early fdatasyncs of the partial file. */
const FLUSH_EVERY = 64 * 1024 * 1024;

async function fetchChunks(
  opts: MultipartDownloadOptions,
  file: PartialFile,
  hash: WorkerSha256,
  size: number,
  etag: string | undefined,
  where: string,
  attempts: number,
  timeout: number,
): Promise<{ sha256: string; chunks: number; maxInFlight: number }> {
  const preload = Math.max(1, opts.preload);
  const governor = new ParallelismGovernor({ initial: opts.parallel, max: opts.maxParallel });
  const count = Math.ceil(size / opts.chunkSize);
  const pool: Buffer[] = [];
  /** Chunks fetched and not yet hashed, by index. */
  const arrived = new Map<number, Buffer>();
  /** Chunks whose buffer is held by their write or by the hash (2: both, 1: one, absent: free). */
  const holds = new Map<number, { buf: Buffer; n: number }>();
  const pending = new Set<Promise<void>>();
  let failure: unknown;
  let next = 0;
  let sent = 0;
  let hashed = 0;
  let done = 0;
  let maxInFlight = 0;
  let fetching = 0;
  // Dirty pages are flushed as the file grows (one fdatasync at a time, each
  // time FLUSH_EVERY more bytes are written), so the fsync before the rename
  // finds little left to write.
  let flushing = false;
  let flushedAt = 0;
  const flushEarly = (): void => {
    if (flushing || done - flushedAt < FLUSH_EVERY || done === size) return;
    flushing = true;
    flushedAt = done;
    track(file.fh.datasync().finally(() => (flushing = false)));
  };
  const release = (i: number): void => {
    const h = holds.get(i);
    if (h === undefined || --h.n > 0) return;
    holds.delete(i);
    pool.push(h.buf);
  };
  const track = (p: Promise<void>): void => {
    const q: Promise<void> = p
      .catch((err: unknown) => {
        failure ??= err;
      })
      .finally(() => pending.delete(q));
    pending.add(q);
  };
  const arrive = (i: number, chunk: Buffer): void => {
    holds.get(i)!.n = 2;
    track(
      writeChunk(file, chunk, i * opts.chunkSize).then(() => {
        done += chunk.length;
        release(i);
        opts.onProgress?.(done, size);
        flushEarly();
      }),
    );
    arrived.set(i, chunk);
    // In order: the worker hashes what it is sent in the order it is sent.
    for (let c = arrived.get(sent); c !== undefined; c = arrived.get(sent)) {
      const k = sent++;
      arrived.delete(k);
      track(
        hash.update(c).then(() => {
          hashed += 1;
          release(k);
        }),
      );
    }
  };
  while (hashed < count || pending.size > 0) {
    while (failure === undefined && next < count && fetching < governor.limit && holds.size < preload) {
      const i = next++;
      const start = i * opts.chunkSize;
      const length = Math.min(opts.chunkSize, size - start);
      const buf = pool.pop() ?? alignedSharedBuffer(Math.min(opts.chunkSize, size));
      holds.set(i, { buf, n: 1 });
      fetching += 1;
      maxInFlight = Math.max(maxInFlight, fetching);
      track(
        fetchChunk(opts, buf.subarray(0, length), start, etag, `chunk ${i + 1} of ${where}`, attempts, timeout).then(
          (chunk) => {
            fetching -= 1;
            governor.partDone(length);
            arrive(i, chunk);
          },
          (err: unknown) => {
            fetching -= 1;
            throw err;
          },
        ),
      );
    }
    if (failure !== undefined) {
      while (pending.size > 0) await Promise.all(pending); // no write may outlive the file handle
      throw failure;
    }
    if (pending.size === 0) break; // nothing left to wait for (size 0)
    await Promise.race(pending);
  }
  if (failure !== undefined) throw failure;
  return { sha256: await hash.digest(), chunks: count, maxInFlight };
}

/** GETs bytes [start, start + into.length) into `into` (no copy beyond the socket's), tried again as multipart-retry.ts says. */
async function fetchChunk(
  opts: MultipartDownloadOptions,
  into: Buffer,
  start: number,
  etag: string | undefined,
  what: string,
  attempts: number,
  timeout: number,
): Promise<Buffer> {
  const length = into.length;
  return retryS3(
    async (signal) => {
      const out = await opts.client.send(
        new GetObjectCommand({ Bucket: opts.bucket, Key: opts.key, Range: `bytes=${start}-${start + length - 1}`, ...(etag !== undefined ? { IfMatch: etag } : {}) }),
        { abortSignal: signal },
      );
      if (out.Body === undefined) throw new DroverError('S3_ERROR', `S3 ${what} failed: the answer had no body.`, true);
      // In Node the body is the response stream (a Readable).
      const body = out.Body as unknown as AsyncIterable<Uint8Array>;
      let at = 0;
      for await (const piece of body) {
        if (at + piece.length > length) throw new DroverError('S3_ERROR', `S3 ${what} returned more than ${length} bytes.`, true);
        into.set(piece, at);
        at += piece.length;
      }
      if (at !== length) throw new DroverError('S3_ERROR', `S3 ${what} returned ${at} bytes, not ${length}.`, true);
      return into;
    },
    what,
    attempts,
    timeout,
  ).catch((err: unknown) => {
    throw translateS3Error(err, what);
  });
}
