/**
 * The ImageStore contract (STYLE.md 9): one suite every store passes (the
 * directory store and the S3 store against a real s3rver), so callers can
 * rely on the same behaviour from both: verified puts that leave nothing
 * behind when refused, NOT_FOUND / null for absent objects, sorted prefix
 * listings, and keys that can never name anything outside the store.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { DroverError } from '../../src/lib/errors.js';
import type { ImageStore } from '../../src/storage/image-store.js';

export interface ImageStoreHarness {
  store: ImageStore;
  /**
   * The server may keep part of an upload the client aborted, for a moment
   * after the abort (s3rver does; AWS S3 and MinIO never show one). The
   * store deletes it at once, but the server can still be writing it.
   */
  keepsAbortedUploads?: boolean;
  close(): Promise<void>;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

function isCode(code: string): (e: unknown) => boolean {
  return (e: unknown) => e instanceof DroverError && e.code === code;
}

export function runImageStoreContract(name: string, makeHarness: () => Promise<ImageStoreHarness>): void {
  describe(`ImageStore contract: ${name}`, () => {
    let h: ImageStoreHarness;
    before(async () => {
      h = await makeHarness();
    });
    after(async () => {
      await h?.close();
    });

    it('puts, heads, gets and deletes an object, reporting progress and the sha256', async () => {
      const bytes = randomBytes(300_000);
      const seen: number[] = [];
      const info = await h.store.put('images/a1', Readable.from([bytes.subarray(0, 100_000), bytes.subarray(100_000)]), {
        size: bytes.length,
        sha256: sha(bytes),
        onProgress: (n) => seen.push(n),
      });
      assert.equal(info.size, bytes.length);
      assert.equal(info.sha256, sha(bytes));
      assert.ok(info.etag !== '');
      assert.equal(seen.at(-1), bytes.length);
      const head = await h.store.head('images/a1');
      assert.deepEqual({ size: head?.size, sha256: head?.sha256, etag: head?.etag }, { size: bytes.length, sha256: sha(bytes), etag: info.etag });
      const got = await h.store.get('images/a1');
      assert.equal(got.info.etag, info.etag);
      assert.ok((await readAll(got.body)).equals(bytes));
      await h.store.delete('images/a1');
      assert.equal(await h.store.head('images/a1'), null);
    });

    it('changes the etag when an object is replaced', async () => {
      const one = Buffer.from('first version');
      const two = Buffer.from('the second, longer version');
      const a = await h.store.put('images/etag', Readable.from([one]), { size: one.length, sha256: sha(one) });
      const b = await h.store.put('images/etag', Readable.from([two]), { size: two.length, sha256: sha(two) });
      assert.notEqual(a.etag, b.etag);
      assert.ok((await readAll((await h.store.get('images/etag')).body)).equals(two));
    });

    it('refuses bytes whose sha256 or size differ from what the caller said, leaving no object', async () => {
      const bytes = randomBytes(50_000);
      await assert.rejects(h.store.put('images/bad-sha', Readable.from([bytes]), { size: bytes.length, sha256: sha(Buffer.from('other')) }), isCode('CHECKSUM_MISMATCH'));
      assert.equal(await h.store.head('images/bad-sha'), null);
      await assert.rejects(
        h.store.put('images/bad-size', Readable.from([bytes.subarray(0, 40_000)]), { size: 40_001, sha256: sha(bytes.subarray(0, 40_000)) }),
        /ended after 40000 of the 40001 bytes/,
      );
      if (!h.keepsAbortedUploads) assert.equal(await h.store.head('images/bad-size'), null);
      assert.deepEqual((await h.store.list('images/bad-sha')).map((o) => o.key), []);
    });

    it('leaves no object when the source stream fails mid-way', async () => {
      const failing = new Readable({
        read() {
          this.push(randomBytes(10_000));
          this.destroy(new Error('disk read error'));
        },
      });
      await assert.rejects(h.store.put('images/broken', failing, { size: 100_000, sha256: '0'.repeat(64) }), /disk read error/);
      if (!h.keepsAbortedUploads) assert.equal(await h.store.head('images/broken'), null);
    });

    it('says NOT_FOUND for a missing object, null on head, and deletes a missing one quietly', async () => {
      await assert.rejects(h.store.get('images/none'), isCode('NOT_FOUND'));
      assert.equal(await h.store.head('images/none'), null);
      await h.store.delete('images/none');
    });

    it('lists by prefix, sorted, with sizes', async () => {
      for (const k of ['list/b', 'list/a', 'list/c/d', 'other/x']) {
        const b = Buffer.from(k);
        await h.store.put(k, Readable.from([b]), { size: b.length, sha256: sha(b) });
      }
      assert.deepEqual((await h.store.list('list/')).map((o) => [o.key, o.size]), [['list/a', 6], ['list/b', 6], ['list/c/d', 8]]);
      assert.deepEqual((await h.store.list('other/')).map((o) => o.key), ['other/x']);
      assert.deepEqual(await h.store.list('nothing-here/'), []);
    });

    it('refuses keys that are not relative paths of safe segments, before any I/O', async () => {
      const b = Buffer.from('x');
      for (const key of ['../escape', '/abs', 'a/../b', 'a//b', '.hidden', 'a/.b', '', 'a/', 'sp ace', 'a\\b']) {
        await assert.rejects(h.store.put(key, Readable.from([b]), { size: 1, sha256: sha(b) }), isCode('USAGE'), key);
        await assert.rejects(h.store.head(key), isCode('USAGE'), key);
        await assert.rejects(h.store.delete(key), isCode('USAGE'), key);
      }
      await assert.rejects(h.store.list('../'), isCode('USAGE'));
    });
  });
}
