/**
 * Both image stores pass the ImageStore contract: a directory, and an S3
 * bucket on a real s3rver. The S3 store's objects are then cross-checked
 * with the independent client (awscli), and a directory store is shown not
 * to write outside its root whatever the key.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DirImageStore } from '../../src/storage/dir-image-store.js';
import { S3ImageStore } from '../../src/storage/s3-image-store.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';
import { runImageStoreContract } from './image-store.contract.js';

runImageStoreContract('directory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-store-'));
  return { store: new DirImageStore(join(dir, 'store, x=1')), close: () => rm(dir, { recursive: true, force: true }) };
});

runImageStoreContract('S3 (s3rver)', async () => {
  const s3 = await startTestS3();
  return { store: new S3ImageStore({ client: s3.client, bucket: s3.bucket, keyPrefix: 'fleet/' }), keepsAbortedUploads: true, close: () => s3.close() };
});

describe('S3 image store, seen by awscli', () => {
  let s3: TestS3;
  before(async () => {
    s3 = await startTestS3();
  });
  after(async () => {
    await s3?.close();
  });

  it('stores the bytes under the key prefix with the sha256 in the object metadata', async () => {
    const store = new S3ImageStore({ client: s3.client, bucket: s3.bucket, keyPrefix: 'fleet/' });
    const bytes = Buffer.alloc(123_456, 0x5a);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await store.put('images/x1', Readable.from([bytes]), { size: bytes.length, sha256 });
    const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', 'fleet/images/x1']);
    assert.equal(head.code, 0, head.stderr);
    const meta = JSON.parse(head.stdout) as { ContentLength: number; Metadata: Record<string, string> };
    assert.equal(meta.ContentLength, bytes.length);
    assert.equal(meta.Metadata.sha256, sha256);
    const ls = await s3.aws(['s3', 'ls', `s3://${s3.bucket}/fleet/images/`]);
    assert.match(ls.stdout, /\s123456 x1\n/);
  });
});

describe('directory image store', () => {
  it('never writes outside its root, and hides its sidecars from listings', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-store-'));
    try {
      const store = new DirImageStore(join(dir, 'root'));
      const b = Buffer.from('payload');
      await store.put('images/ok', Readable.from([b]), { size: b.length, sha256: createHash('sha256').update(b).digest('hex') });
      await assert.rejects(store.put('../outside', Readable.from([b]), { size: b.length, sha256: createHash('sha256').update(b).digest('hex') }));
      assert.deepEqual((await readdir(dir)).sort(), ['root']);
      assert.deepEqual((await store.list('')).map((o) => o.key), ['images/ok']);
      assert.deepEqual((await readdir(join(dir, 'root', 'images'))).sort(), ['.ok.sha256', 'ok']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
