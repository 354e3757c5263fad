/**
 * `drover image import FILE|URL`: what imgadm import does, for qcow2 and raw
 * images.
 *
 *  1. A URL is downloaded to a temp file first. If the same URL was imported
 *     before, the request carries that import's ETag (If-None-Match) and
 *     Last-Modified (If-Modified-Since): a 304 means the image is unchanged
 *     and nothing is imported (Vcycle's cache rule).
 *  2. `qemu-img info` decides the format, never the name; only raw and
 *     qcow2 are taken, and a qcow2 that names a backing file or an external
 *     data file is refused (it would make qemu open a file of the host).
 *  3. The sha256 is computed, the record written as `importing`, the bytes
 *     uploaded to the image store (which verifies them on the way), and the
 *     record turned `active` with a compare-and-swap. A failed upload
 *     removes the record again; an interrupted one leaves it `importing`
 *     (never used by a VM) for `drover image delete`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import {
  IMAGE_NAME_RE,
  IMAGE_VERSION_RE,
  imageObjectKey,
  type ImageFormat,
  type ImageRecord,
  type ImageSource,
} from '../../contract/image-record.js';
import { UUID_RE } from '../../contract/vm-record.js';
import { DroverError, errorMessage } from '../../lib/errors.js';
import type { ImageStore } from '../../storage/image-store.js';
import type { QemuImg } from '../../storage/qemu-img.js';
import type { ImageRepository } from '../../store/image-repository.js';
import { ProgressBar } from '../output/progress.js';

export interface ImportDeps {
  images: ImageRepository;
  store: ImageStore;
  qemuImg: QemuImg;
  /** Progress lines go here. */
  stderr: NodeJS.WritableStream;
  now?: () => Date;
}

export interface ImportRequest {
  source: string;
  name?: string;
  version?: string;
}

export type ImportResult = { outcome: 'imported'; record: ImageRecord } | { outcome: 'unchanged'; record: ImageRecord };

const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

export async function importImage(deps: ImportDeps, req: ImportRequest): Promise<ImportResult> {
  const now = deps.now ?? (() => new Date());
  if (req.name !== undefined && (!IMAGE_NAME_RE.test(req.name) || UUID_RE.test(req.name))) {
    throw new DroverError('USAGE', `The image name ${JSON.stringify(req.name)} must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ and not be a UUID.`);
  }
  if (req.version !== undefined && !IMAGE_VERSION_RE.test(req.version)) {
    throw new DroverError('USAGE', `The image version ${JSON.stringify(req.version)} must match ^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$.`);
  }
  const tmp = await mkdtemp(join(tmpdir(), 'drover-import-'));
  try {
    let file: string;
    let source: ImageSource;
    if (isUrl(req.source)) {
      const previous = newestFromUrl(await deps.images.listValid(), req.source);
      file = join(tmp, 'download');
      const got = await downloadUrl(req.source, file, previous?.source.type === 'url' ? previous.source : undefined, deps.stderr);
      if (got === 'not-modified') return { outcome: 'unchanged', record: previous! };
      source = { type: 'url', url: req.source, ...(got.etag ? { etag: got.etag } : {}), ...(got.lastModified ? { last_modified: got.lastModified } : {}) };
    } else {
      file = resolve(req.source);
      const st = await stat(file).catch(() => null);
      if (!st?.isFile()) throw new DroverError('NOT_FOUND', `The image file ${file} ${st ? 'is not a regular file' : 'does not exist'}.`);
      source = { type: 'file', path: file };
    }
    const { format, virtualSize } = await inspectImage(deps.qemuImg, file);
    const { size, sha256 } = await hashFile(file);
    const name = req.name ?? defaultImageName(req.source);
    const version = req.version ?? defaultVersion(now());
    const taken = (await deps.images.listValid()).find((i) => i.name === name && i.version === version);
    if (taken) throw new DroverError('CONFLICT', `Image ${name}:${version} exists (${taken.uuid}); give another --version or delete it first.`);

    const uuid = randomUUID();
    const record: ImageRecord = { uuid, name, version, format, size, virtual_size: virtualSize, sha256, source, created_at: now().toISOString(), state: 'importing' };
    if (!(await deps.images.create(uuid, record))) throw new DroverError('CONFLICT', `Image ${uuid} exists already.`, true);
    const bar = new ProgressBar({ label: `upload ${name}:${version}`, total: size, stream: deps.stderr });
    try {
      await deps.store.put(imageObjectKey(uuid), createReadStream(file), { size, sha256, onProgress: (n) => bar.update(n) });
      bar.done(`stored in ${deps.store.description}`);
    } catch (err) {
      bar.abort();
      const current = await deps.images.get(uuid);
      if (current) await deps.images.deleteIf(current).catch(() => undefined);
      throw err;
    }
    const active: ImageRecord = { ...record, state: 'active' };
    const current = await deps.images.get(uuid);
    // Only from `importing`: a concurrent `image delete` may have claimed it (`deleting`).
    if (!current?.parsed.ok || current.parsed.value.state !== 'importing' || !(await deps.images.replace(current, { ...(JSON.parse(current.raw) as object), state: 'active' }))) {
      throw new DroverError('CONFLICT', `Image ${uuid} changed while it was being imported; see drover image get ${uuid}.`);
    }
    return { outcome: 'imported', record: active };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The format qemu-img reads, if drover can run it; refuses what qemu would open more files for. */
export async function inspectImage(qemuImg: QemuImg, file: string): Promise<{ format: ImageFormat; virtualSize: number }> {
  const info = await qemuImg.info(file);
  if (info.format !== 'raw' && info.format !== 'qcow2') {
    throw new DroverError('IMAGE_ERROR', `${file} is a ${info.format} image; drover takes qcow2 or raw (convert it with qemu-img convert -O qcow2).`);
  }
  if (info.backingFile !== undefined) {
    throw new DroverError('IMAGE_ERROR', `${file} is a qcow2 overlay of ${info.backingFile}; import a standalone image (qemu-img convert -O qcow2 flattens it).`);
  }
  if (info.dataFile !== undefined) {
    throw new DroverError('IMAGE_ERROR', `${file} keeps its data in the external file ${info.dataFile}; import a standalone image.`);
  }
  return { format: info.format, virtualSize: info.virtualSize };
}

export async function hashFile(file: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

/** The file or URL's last path segment without image extensions, made a valid name. */
export function defaultImageName(source: string): string {
  let last = source;
  if (isUrl(source)) {
    try {
      last = decodeURIComponent(new URL(source).pathname);
    } catch {
      last = source;
    }
  }
  const base = basename(last).replace(/(\.(qcow2|img|raw|bin))+$/i, '');
  const clean = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 128);
  return clean === '' || UUID_RE.test(clean) ? 'image' : clean;
}

/** A sortable version from the import time: 20261122.090000. */
export function defaultVersion(now: Date): string {
  const iso = now.toISOString();
  return `${iso.slice(0, 10).replaceAll('-', '')}.${iso.slice(11, 19).replaceAll(':', '')}`;
}

function newestFromUrl(images: readonly ImageRecord[], url: string): ImageRecord | undefined {
  return images
    .filter((i) => i.state === 'active' && i.source.type === 'url' && i.source.url === url)
    .sort((a, b) => (a.created_at < b.created_at ? 1 : -1))[0];
}

/**
 * GETs `url` into `dest`, conditionally on a previous import's validators.
 * 'not-modified' when the server answers 304.
 */
export async function downloadUrl(
  url: string,
  dest: string,
  previous: { etag?: string; last_modified?: string } | undefined,
  stderr: NodeJS.WritableStream,
): Promise<'not-modified' | { etag?: string; lastModified?: string }> {
  const headers: Record<string, string> = {};
  if (previous?.etag !== undefined) headers['If-None-Match'] = previous.etag;
  if (previous?.last_modified !== undefined) headers['If-Modified-Since'] = previous.last_modified;
  let res: Response;
  try {
    res = await fetch(url, { headers, redirect: 'follow' });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    throw new DroverError('IMAGE_ERROR', `Could not download ${url}: ${errorMessage(cause ?? err)}.`, true);
  }
  if (res.status === 304) {
    await res.body?.cancel();
    return 'not-modified';
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new DroverError('IMAGE_ERROR', `GET ${url} answered HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}.`);
  }
  const length = Number(res.headers.get('content-length'));
  const bar = new ProgressBar({ label: `download ${basename(new URL(url).pathname) || url}`, ...(length > 0 ? { total: length } : {}), stream: stderr });
  let bytes = 0;
  const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  body.on('data', (c: Buffer) => bar.update((bytes += c.length)));
  try {
    await pipeline(body, createWriteStream(dest, { mode: 0o600 }));
  } catch (err) {
    bar.abort();
    throw new DroverError('IMAGE_ERROR', `The download of ${url} broke off: ${errorMessage(err)}.`, true);
  }
  if (length > 0 && bytes !== length) {
    bar.abort();
    throw new DroverError('IMAGE_ERROR', `The download of ${url} ended after ${bytes} of ${length} bytes.`, true);
  }
  bar.done();
  const etag = res.headers.get('etag') ?? undefined;
  const lastModified = res.headers.get('last-modified') ?? undefined;
  return { ...(etag !== undefined ? { etag } : {}), ...(lastModified !== undefined ? { lastModified } : {}) };
}
