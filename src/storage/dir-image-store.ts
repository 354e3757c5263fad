/**
 * An ImageStore in a directory: the embedded default (`drover up` puts it in
 * its state dir), or a filesystem every host mounts at the same path.
 *
 * `<root>/<key>` holds the bytes; a hidden `.<name>.sha256` beside it the
 * sha256 given at put time (dot-files are never valid keys, so they cannot
 * collide with an object and `list` skips them). Writes go to a temp file
 * that is renamed into place once its bytes are verified.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DroverError, errorMessage } from '../lib/errors.js';
import { HashingStream } from './hashing-stream.js';
import { assertStoreKey, assertStorePrefix, checksumMismatch, type ImageStore, type PutOptions, type StoredObjectInfo } from './image-store.js';

export class DirImageStore implements ImageStore {
  readonly description: string;

  constructor(private readonly root: string) {
    if (!root.startsWith('/')) throw new DroverError('CONFIG_INVALID', `The image store directory ${JSON.stringify(root)} must be an absolute path.`);
    this.description = `dir:${root}`;
  }

  private pathOf(key: string): string {
    assertStoreKey(key);
    return join(this.root, key);
  }

  private sidecarOf(path: string): string {
    return join(dirname(path), `.${basename(path)}.sha256`);
  }

  async put(key: string, body: Readable, opts: PutOptions): Promise<StoredObjectInfo> {
    const path = this.pathOf(key);
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
    const hasher = new HashingStream(opts.onProgress, opts.size);
    try {
      try {
        await pipeline(body, hasher, createWriteStream(tmp, { mode: 0o644, flush: true }));
      } catch (err) {
        throw new DroverError('IMAGE_ERROR', `Writing ${key} to the image store ${this.root} failed: ${errorMessage(err)}.`, false, { cause: err });
      }
      const got = { size: hasher.bytes, sha256: hasher.digest() };
      if (got.size !== opts.size || got.sha256 !== opts.sha256) throw checksumMismatch(`The upload of ${key}`, opts, got);
      await writeFile(this.sidecarOf(path), `${got.sha256}\n`, { mode: 0o644 });
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
    return (await this.head(key)) as StoredObjectInfo;
  }

  async get(key: string): Promise<{ info: StoredObjectInfo; body: Readable }> {
    const info = await this.head(key);
    if (!info) throw new DroverError('NOT_FOUND', `The image store ${this.root} has no object ${key}.`);
    return { info, body: createReadStream(this.pathOf(key)) };
  }

  async head(key: string): Promise<StoredObjectInfo | null> {
    const path = this.pathOf(key);
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
      throw new DroverError('IMAGE_ERROR', `Reading ${key} in the image store ${this.root} failed: ${errorMessage(err)}.`, true, { cause: err });
    }
    if (!st.isFile()) return null;
    const sha = (await readFile(this.sidecarOf(path), 'utf8').catch(() => '')).trim();
    return {
      key,
      size: st.size,
      etag: `"${st.size.toString(16)}-${Math.round(st.mtimeMs * 1000).toString(16)}"`,
      lastModified: st.mtime,
      ...(sha !== '' ? { sha256: sha } : {}),
    };
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    await rm(path, { force: true });
    await rm(this.sidecarOf(path), { force: true });
  }

  async list(prefix: string): Promise<StoredObjectInfo[]> {
    assertStorePrefix(prefix);
    const keys: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(join(this.root, rel), { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      for (const e of entries) {
        if (e.name.startsWith('.')) continue;
        const key = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) {
          if (prefix.startsWith(`${key}/`) || key.startsWith(prefix)) await walk(key);
        } else if (e.isFile() && key.startsWith(prefix)) {
          keys.push(key);
        }
      }
    };
    await walk('');
    keys.sort();
    const out: StoredObjectInfo[] = [];
    for (const k of keys) {
      const info = await this.head(k);
      if (info) out.push(info);
    }
    return out;
  }
}
