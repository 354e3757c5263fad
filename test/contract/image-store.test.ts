/**
 * Both image stores pass the ImageStore contract: a directory, and an S3
 * bucket on a real s3rver (twice: with the default 5 MiB parts, where the
 * contract's small objects are single PUTs, and with 16 KiB parts, where
 * they are multipart uploads). The S3 store's objects are then cross-checked
 * with the independent client (awscli), and a directory store is shown not
 * to write outside its root whatever the key.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/storage/s3/client.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DirImageStore } from '../../src/storage/dir-image-store.js';
import { DroverError } from '../../src/lib/errors.js';
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

runImageStoreContract('S3 (s3rver), multipart with 16 KiB parts', async () => {
  const s3 = await startTestS3();
  // A multipart upload is never visible until completed, aborted ones included: no keepsAbortedUploads.
  const upload = { s3_upload_chunk_size: 16 * 1024, parallel_uploads: 2, max_parallel_uploads: 4 };
  return { store: new S3ImageStore({ client: s3.client, bucket: s3.bucket, keyPrefix: 'fleet/', upload }), close: () => s3.close() };
});

/** The S3 commands a client sends, by name, in order (read from the SDK's own middleware stack). */
function recordCommands(client: S3Client): string[] {
  const names: string[] = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      names.push(String(context.commandName));
      return next(args);
    },
    { step: 'initialize', name: 'test-record-commands' },
  );
  return names;
}

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

  it('uploads an image bigger than one part as a multipart upload, sha256 in the metadata; refused bytes never become an object', async () => {
    const MiB = 1024 * 1024;
    const client = createS3Client(s3.settings);
    const sent = recordCommands(client);
    try {
      const store = new S3ImageStore({ client, bucket: s3.bucket, keyPrefix: 'fleet/', upload: { s3_upload_chunk_size: 5 * MiB, parallel_uploads: 2, max_parallel_uploads: 3 } });
      const bytes = randomBytes(12 * MiB + 3);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const progress: number[] = [];
      const info = await store.put('images/big', Readable.from([bytes.subarray(0, 7 * MiB), bytes.subarray(7 * MiB)]), { size: bytes.length, sha256, onProgress: (n) => progress.push(n) });
      assert.deepEqual({ size: info.size, sha256: info.sha256 }, { size: bytes.length, sha256 });
      assert.deepEqual(sent.filter((n) => n !== 'HeadObjectCommand'), ['CreateMultipartUploadCommand', 'UploadPartCommand', 'UploadPartCommand', 'UploadPartCommand', 'CompleteMultipartUploadCommand']);
      assert.equal(progress.at(-1), bytes.length);
      const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', 'fleet/images/big']);
      assert.equal(head.code, 0, head.stderr);
      const meta = JSON.parse(head.stdout) as { ContentLength: number; Metadata: Record<string, string> };
      assert.deepEqual([meta.ContentLength, meta.Metadata.sha256], [bytes.length, sha256]);
      const copy = join(await mkdtemp(join(tmpdir(), 'drover-big-')), 'copy');
      assert.equal((await s3.aws(['s3', 'cp', `s3://${s3.bucket}/fleet/images/big`, copy])).code, 0);
      assert.equal(createHash('sha256').update(await readFile(copy)).digest('hex'), sha256, 'awscli reads back the same bytes');
      await rm(join(copy, '..'), { recursive: true, force: true });

      // The wrong sha256: every part is sent, then the upload is aborted instead of completed.
      sent.length = 0;
      await assert.rejects(
        store.put('images/big-bad', Readable.from([bytes]), { size: bytes.length, sha256: '0'.repeat(64) }),
        (e: unknown) => e instanceof DroverError && e.code === 'CHECKSUM_MISMATCH',
      );
      assert.deepEqual(sent.slice(-1), ['AbortMultipartUploadCommand']);
      assert.ok(!sent.includes('CompleteMultipartUploadCommand'));
      assert.notEqual((await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', 'fleet/images/big-bad'])).code, 0, 'no object');
    } finally {
      client.destroy();
    }
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
