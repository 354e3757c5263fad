/**
 * A host's image cache, `<state>/images/<sha256>`: the images its VMs' disks
 * are overlays of, fetched from the fleet's image store the first time a VM
 * here needs one, and kept until `drover image vacuum` finds no overlay
 * backed by it (image-vacuum.ts).
 *
 * Theory of operation
 *  - Content-addressed: a file's name is its sha256, so a cached file never
 *    goes stale and two records of the same bytes share one file.
 *  - A download goes to a hidden temp file, is hashed on the way, and is
 *    renamed into place only if its size and sha256 match the image record.
 *    A mismatch is refused (the temp file is deleted, `onRefused` reports
 *    it) and the download is tried again after a backoff; after `attempts`
 *    tries the start fails for good (CHECKSUM_MISMATCH, terminal) with a
 *    sentence that says so. A corrupt download is never used.
 *  - A store that cannot be reached (network, 5xx) is tried `attempts`
 *    times too, then the error is retryable (IMAGE_ERROR): the VM's
 *    worker backs off, says so in the record's `error`, and starts again.
 *  - One download per sha256 at a time, whatever number of VMs wait for it.
 *  - Cached files are read-only (0444): qemu only ever reads a backing file,
 *    and a stray write would corrupt every overlay on top of it.
 *  - Each use touches the file's mtime, which vacuum's `min-age` reads, so a
 *    file just fetched for a start under way is not vacuumed before its
 *    overlay exists.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rename, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { imageObjectKey, SHA256_RE, type ImageRecord } from '../contract/image-record.js';
import { DroverError, errorMessage, oneSentence } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/logger.js';
import { HashingStream } from './hashing-stream.js';
import type { ImageStore } from './image-store.js';

export interface ImageCacheOptions {
  /** `<state>/images`. */
  dir: string;
  /** The fleet's image store, opened when a download needs it. */
  openStore: () => Promise<ImageStore>;
  /** Downloads tried per ensure() before giving up (3). */
  attempts?: number;
  /** Delay before the second try, doubling (1 s). */
  retryDelayMs?: number;
  logger?: Logger;
  /** A download that failed its check, before it is retried (the agent reports an event). */
  onRefused?(image: ImageRecord, why: string, attempt: number): void;
}

export interface CachedImage {
  sha256: string;
  path: string;
  size: number;
  /** Last use (or download). */
  mtime: Date;
}

export function cachedImagePath(dir: string, sha256: string): string {
  if (!SHA256_RE.test(sha256)) throw new DroverError('USAGE', `${JSON.stringify(sha256)} is not a sha256.`);
  return join(dir, sha256);
}

export class ImageCache {
  readonly dir: string;
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly log: Logger;

  constructor(private readonly opts: ImageCacheOptions) {
    this.dir = opts.dir;
    this.log = opts.logger ?? silentLogger();
  }

  /** The cached file of `image`, downloading and verifying it first when missing. */
  ensure(image: ImageRecord): Promise<string> {
    const pending = this.inflight.get(image.sha256);
    if (pending) return pending;
    const run = this.fetchIfMissing(image).finally(() => this.inflight.delete(image.sha256));
    this.inflight.set(image.sha256, run);
    return run;
  }

  private async fetchIfMissing(image: ImageRecord): Promise<string> {
    const path = cachedImagePath(this.dir, image.sha256);
    const st = await lstat(path).catch(() => null);
    if (st?.isFile() && st.size === image.size) {
      const now = new Date();
      await utimes(path, now, now).catch(() => undefined);
      return path;
    }
    if (st) {
      // Not what a verified download leaves (a symlink, a truncated file): never use it.
      this.log.warn({ path }, 'cached image is not a regular file of the right size; fetching it again');
      await rm(path, { force: true, recursive: false }).catch(() => undefined);
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const attempts = this.opts.attempts ?? 3;
    let delay = this.opts.retryDelayMs ?? 1000;
    let last: DroverError | null = null;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        await this.download(image, path);
        return path;
      } catch (err) {
        last = err instanceof DroverError ? err : new DroverError('IMAGE_ERROR', oneSentence(errorMessage(err)), true, { cause: err });
        if (last.code === 'CHECKSUM_MISMATCH') this.opts.onRefused?.(image, last.message, attempt);
        else if (!last.retryable) throw last;
        this.log.warn({ image: image.uuid, attempt, err: last.message }, 'image download failed');
        if (attempt < attempts) {
          await new Promise((r) => setTimeout(r, delay));
          delay *= 2;
        }
      }
    }
    if (last?.code === 'CHECKSUM_MISMATCH') {
      throw new DroverError(
        'CHECKSUM_MISMATCH',
        `Image ${image.name}:${image.version} (${image.uuid}) failed its sha256 check in ${attempts} downloads from the image store (${last.message.replace(/\.$/, '')}); the copy in the store is corrupt, so re-import the image.`,
        false,
      );
    }
    // Retryable (the store is unreachable, a 5xx): the VM's worker tries the
    // start again with its backoff, and shows this sentence in the record meanwhile.
    const why = last ? ` (${last.message.replace(/\.$/, '')})` : '';
    throw new DroverError('IMAGE_ERROR', `Image ${image.name}:${image.version} could not be fetched from the image store in ${attempts} tries${why}; the agent keeps trying.`, true, { cause: last });
  }

  private async download(image: ImageRecord, path: string): Promise<void> {
    const store = await this.opts.openStore();
    const tmp = join(this.dir, `.${image.sha256}.${randomBytes(4).toString('hex')}.part`);
    const hasher = new HashingStream();
    try {
      const { body } = await store.get(imageObjectKey(image.uuid));
      try {
        await pipeline(body, hasher, createWriteStream(tmp, { mode: 0o600, flush: true }));
      } catch (err) {
        throw new DroverError('IMAGE_ERROR', `The download of image ${image.uuid} from ${store.description} broke off: ${errorMessage(err)}.`, true, { cause: err });
      }
      const got = { size: hasher.bytes, sha256: hasher.digest() };
      if (got.size !== image.size || got.sha256 !== image.sha256) {
        const why = got.size !== image.size ? `${got.size} bytes instead of ${image.size}` : `sha256 ${got.sha256.slice(0, 12)}… instead of ${image.sha256.slice(0, 12)}…`;
        throw new DroverError('CHECKSUM_MISMATCH', `The download of image ${image.uuid} from ${store.description} had ${why}, so it was refused.`, false);
      }
      await chmod(tmp, 0o444);
      await rename(tmp, path);
      this.log.info({ image: image.uuid, sha256: image.sha256, bytes: got.size }, 'image fetched into the cache');
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Every verified file in the cache. */
  async list(): Promise<CachedImage[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: CachedImage[] = [];
    for (const name of names.filter((n) => SHA256_RE.test(n)).sort()) {
      const path = join(this.dir, name);
      const st = await lstat(path).catch(() => null);
      if (st?.isFile()) out.push({ sha256: name, path, size: st.size, mtime: st.mtime });
    }
    return out;
  }
}
