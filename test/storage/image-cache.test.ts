/**
 * The host's image cache over a real directory store: a verified download
 * lands read-only under its sha256, is fetched once however many starts
 * wait for it, and a corrupt copy in the store is refused on every try,
 * retried, reported, and never left in the cache.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { imageObjectKey, type ImageRecord } from '../../src/contract/image-record.js';
import { DroverError } from '../../src/lib/errors.js';
import { DirImageStore } from '../../src/storage/dir-image-store.js';
import { ImageCache } from '../../src/storage/image-cache.js';
import type { ImageStore } from '../../src/storage/image-store.js';

/** A real store that counts downloads. */
function counting(store: ImageStore): ImageStore & { gets: number } {
  const c = Object.create(store) as ImageStore & { gets: number };
  c.gets = 0;
  c.get = (key: string) => {
    c.gets++;
    return store.get(key);
  };
  return c;
}

describe('ImageCache', () => {
  let dir: string;
  let storeRoot: string;
  let store: ImageStore & { gets: number };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-cache-'));
    storeRoot = join(dir, 'store');
    store = counting(new DirImageStore(storeRoot));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function importBytes(bytes: Buffer): Promise<ImageRecord> {
    const uuid = randomUUID();
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await store.put(imageObjectKey(uuid), Readable.from([bytes]), { size: bytes.length, sha256 });
    return { uuid, name: 'img', version: '1', format: 'raw', size: bytes.length, virtual_size: bytes.length, sha256, source: { type: 'file', path: '/x' }, created_at: new Date().toISOString(), state: 'active' };
  }

  it('downloads once into <dir>/<sha256>, read-only, for any number of concurrent starts', async () => {
    const bytes = randomBytes(200_000);
    const image = await importBytes(bytes);
    const cache = new ImageCache({ dir: join(dir, 'c1'), openStore: async () => store });
    const before = store.gets;
    const paths = await Promise.all([cache.ensure(image), cache.ensure(image), cache.ensure(image)]);
    assert.deepEqual(new Set(paths), new Set([join(dir, 'c1', image.sha256)]));
    assert.equal(store.gets - before, 1);
    assert.ok((await readFile(paths[0]!)).equals(bytes));
    assert.equal((await stat(paths[0]!)).mode & 0o777, 0o444);
    await cache.ensure(image);
    assert.equal(store.gets - before, 1, 'a cached image is not fetched again');
    assert.deepEqual((await cache.list()).map((c) => c.sha256), [image.sha256]);
  });

  it('fetches again a cached file of the wrong size', async () => {
    const bytes = randomBytes(10_000);
    const image = await importBytes(bytes);
    const cacheDir = join(dir, 'c2');
    const cache = new ImageCache({ dir: cacheDir, openStore: async () => store });
    const path = await cache.ensure(image);
    await rm(path);
    await writeFile(path, 'truncated');
    assert.ok((await readFile(await cache.ensure(image))).equals(bytes));
  });

  it('refuses a corrupt copy on every try, reports each, and leaves nothing in the cache', async () => {
    const bytes = randomBytes(50_000);
    const image = await importBytes(bytes);
    const stored = join(storeRoot, imageObjectKey(image.uuid));
    const corrupt = Buffer.from(bytes);
    corrupt[1234] = (corrupt[1234]! + 1) % 256; // one flipped byte, same size
    await writeFile(stored, corrupt);
    const refused: Array<[number, string]> = [];
    const cacheDir = join(dir, 'c3');
    const cache = new ImageCache({ dir: cacheDir, openStore: async () => store, attempts: 3, retryDelayMs: 10, onRefused: (_i, why, n) => refused.push([n, why]) });
    await assert.rejects(cache.ensure(image), (e: unknown) => {
      assert.ok(e instanceof DroverError);
      assert.equal(e.code, 'CHECKSUM_MISMATCH');
      assert.equal(e.retryable, false);
      assert.match(e.message, /^Image img:1 \(.*\) failed its sha256 check in 3 downloads from the image store \(.*sha256 [0-9a-f]{12}… instead of [0-9a-f]{12}…, so it was refused\); the copy in the store is corrupt, so re-import the image\.$/);
      return true;
    });
    assert.deepEqual(refused.map(([n]) => n), [1, 2, 3]);
    assert.deepEqual(await readdir(cacheDir), [], 'no cached file and no partial download');
  });

  it('uses the copy once a retry finds it good again', async () => {
    const bytes = randomBytes(30_000);
    const image = await importBytes(bytes);
    const stored = join(storeRoot, imageObjectKey(image.uuid));
    await writeFile(stored, randomBytes(30_000));
    const cache = new ImageCache({
      dir: join(dir, 'c4'),
      openStore: async () => store,
      retryDelayMs: 300,
      onRefused: () => void writeFile(stored, bytes), // repaired during the backoff
    });
    assert.ok((await readFile(await cache.ensure(image))).equals(bytes));
  });

  it('gives up at once on a missing object (NOT_FOUND is not retried)', async () => {
    const image = { ...(await importBytes(randomBytes(100))), uuid: randomUUID() };
    const cache = new ImageCache({ dir: join(dir, 'c5'), openStore: async () => store, retryDelayMs: 10 });
    await assert.rejects(cache.ensure(image), (e: unknown) => e instanceof DroverError && e.code === 'NOT_FOUND');
  });
});
