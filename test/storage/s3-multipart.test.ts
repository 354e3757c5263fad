/**
 * Multipart upload and ranged download against a real S3-compatible server
 * (s3rver on loopback), cross-checked with an independent client (awscli),
 * and through a TCP proxy that cuts the connection mid-transfer.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DroverError } from '../../src/lib/errors.js';
import { createS3Client } from '../../src/storage/s3/client.js';
import { uploadFileMultipart } from '../../src/storage/s3/multipart-upload.js';
import { downloadFileMultipart } from '../../src/storage/s3/multipart-download.js';
import { ParallelismGovernor } from '../../src/storage/s3/multipart-parallelism.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const KiB = 1024;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('ParallelismGovernor', () => {
  it('rises by one per window whose throughput beat the last by more than 5%, up to max, and never falls', () => {
    let t = 0;
    const g = new ParallelismGovernor({ initial: 2, max: 4 }, () => t);
    const window = (ms: number): void => {
      const n = g.limit;
      for (let i = 0; i < n; i++) {
        t += ms / n;
        g.partDone(1000);
      }
    };
    window(100); // first window: a baseline, no rise
    assert.equal(g.limit, 2);
    window(100); // 2 parts in 100 ms again: flat, no rise
    assert.equal(g.limit, 2);
    window(50); // faster: rise
    assert.equal(g.limit, 3);
    window(30); // 3 parts in 30 ms: faster again
    assert.equal(g.limit, 4);
    window(10); // faster, but at max
    assert.equal(g.limit, 4);
    window(1000); // much slower: holds
    assert.equal(g.limit, 4);
  });
});

describe('S3 multipart transfers (s3rver, awscli)', () => {
  let s3: TestS3;
  let dir: string;
  let data: Buffer;
  let file: string;

  before(async () => {
    s3 = await startTestS3();
    dir = await mkdtemp(join(tmpdir(), 'drover-mp-'));
    data = randomBytes(3 * 1024 * KiB + 123);
    file = join(dir, 'disk.raw');
    await writeFile(file, data);
  });
  after(async () => {
    await s3.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('uploads in parts with verified ETags; awscli reads back the same bytes', async () => {
    const progress: number[] = [];
    const r = await uploadFileMultipart({
      client: s3.client, bucket: s3.bucket, key: 'mp/one', file, chunkSize: 256 * KiB, parallel: 2, maxParallel: 4,
      onProgress: (done) => progress.push(done),
    });
    assert.equal(r.size, data.length);
    assert.equal(r.parts, 13);
    assert.equal(r.sha256, sha256(data));
    assert.ok(r.maxInFlight >= 2 && r.maxInFlight <= 4, `in flight ${r.maxInFlight}`);
    assert.equal(progress.at(-1), data.length);
    const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', 'mp/one']);
    assert.equal(head.code, 0, head.stderr);
    const info = JSON.parse(head.stdout) as { ContentLength: number; ETag: string };
    assert.equal(info.ContentLength, data.length);
    const out = join(dir, 'aws-get');
    const get = await s3.aws(['s3api', 'get-object', '--bucket', s3.bucket, '--key', 'mp/one', out]);
    assert.equal(get.code, 0, get.stderr);
    assert.ok((await readFile(out)).equals(data));
  });

  it('downloads with ranged GETs in order, verified before the file is renamed into place', async () => {
    const put = await s3.aws(['s3api', 'put-object', '--bucket', s3.bucket, '--key', 'mp/by-aws', '--body', file]);
    assert.equal(put.code, 0, put.stderr);
    const dest = join(dir, 'restored.raw');
    const r = await downloadFileMultipart({
      client: s3.client, bucket: s3.bucket, key: 'mp/by-aws', dest, sha256: sha256(data),
      chunkSize: 200 * KiB, parallel: 2, maxParallel: 4, preload: 3,
    });
    assert.equal(r.chunks, 16);
    assert.ok(r.maxInFlight <= 3, 'preload caps the chunks ahead');
    assert.ok((await readFile(dest)).equals(data));
    await assert.rejects(stat(`${dest}.partial`), { code: 'ENOENT' });
  });

  it('refuses a download whose sha256 differs and leaves no file behind', async () => {
    const dest = join(dir, 'bad.raw');
    await assert.rejects(
      downloadFileMultipart({
        client: s3.client, bucket: s3.bucket, key: 'mp/by-aws', dest, sha256: sha256(Buffer.from('other')),
        chunkSize: 512 * KiB, parallel: 2, maxParallel: 2, preload: 4,
      }),
      (err: unknown) => err instanceof DroverError && err.code === 'CHECKSUM_MISMATCH',
    );
    await assert.rejects(stat(dest), { code: 'ENOENT' });
    await assert.rejects(stat(`${dest}.partial`), { code: 'ENOENT' });
  });

  it('resumes an upload whose connection is cut mid-way (parts tried again)', async () => {
    const url = new URL(s3.endpoint);
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port) });
    const client = createS3Client({ ...s3.settings, endpoint: proxy.url, maxAttempts: 1 });
    try {
      let cut = false;
      const r = await uploadFileMultipart({
        client, bucket: s3.bucket, key: 'mp/cut', file, chunkSize: 128 * KiB, parallel: 2, maxParallel: 2, partTimeoutMs: 1000,
        onProgress: (done) => {
          if (cut || done < 512 * KiB) return;
          cut = true;
          proxy.suspend();
          setTimeout(() => proxy.resume(), 1500);
        },
      });
      assert.ok(cut, 'the connection was cut');
      assert.equal(r.sha256, sha256(data));
      const out = join(dir, 'cut-get');
      const get = await s3.aws(['s3api', 'get-object', '--bucket', s3.bucket, '--key', 'mp/cut', out]);
      assert.equal(get.code, 0, get.stderr);
      assert.ok((await readFile(out)).equals(data));
    } finally {
      client.destroy();
      await proxy.close();
    }
  });

  it('fails cleanly when the connection stays cut: no object appears', async () => {
    const url = new URL(s3.endpoint);
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port) });
    const client = createS3Client({ ...s3.settings, endpoint: proxy.url, maxAttempts: 1 });
    try {
      await assert.rejects(
        uploadFileMultipart({
          client, bucket: s3.bucket, key: 'mp/dead', file, chunkSize: 128 * KiB, parallel: 2, maxParallel: 2, partTimeoutMs: 500, partAttempts: 2,
          onProgress: (done) => {
            if (done >= 256 * KiB) proxy.suspend();
          },
        }),
        (err: unknown) => err instanceof DroverError && err.retryable,
      );
      const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', 'mp/dead']);
      assert.notEqual(head.code, 0, 'no object after a failed upload');
      assert.match(head.stderr, /404|Not Found/);
    } finally {
      client.destroy();
      await proxy.close();
    }
  });
});
