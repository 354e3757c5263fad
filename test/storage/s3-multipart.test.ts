/**
 * Multipart upload and ranged download against a real S3-compatible server
 * (s3rver on loopback), cross-checked with an independent client (awscli),
 * and through a TCP proxy that cuts the connection mid-transfer.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DroverError } from '../../src/lib/errors.js';
import { createS3Client } from '../../src/storage/s3/client.js';
import { mayUnsignPayload, uploadFileMultipart, UNSIGNED_PAYLOAD } from '../../src/storage/s3/multipart-upload.js';
import { downloadFileMultipart } from '../../src/storage/s3/multipart-download.js';
import { ParallelismGovernor } from '../../src/storage/s3/multipart-parallelism.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const KiB = 1024;
const run = promisify(execFile);
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

describe('mayUnsignPayload', () => {
  it('unsigns over https, and over http only to servers that are not AWS', () => {
    assert.equal(mayUnsignPayload('https:', 's3.eu-west-1.amazonaws.com'), true);
    assert.equal(mayUnsignPayload('https:', 'minio.example.org'), true);
    assert.equal(mayUnsignPayload('http:', '127.0.0.1'), true);
    assert.equal(mayUnsignPayload('http:', 's3.eu-west-1.amazonaws.com'), false);
    assert.equal(mayUnsignPayload('http:', 'bucket.s3.amazonaws.com.'), false);
    assert.equal(mayUnsignPayload('http:', 's3.cn-north-1.amazonaws.com.cn'), false);
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

  it('writes the same bytes whether chunks can go through O_DIRECT (4 KiB multiples, unaligned tail) or not (odd chunk size)', async () => {
    const put = await s3.aws(['s3api', 'put-object', '--bucket', s3.bucket, '--key', 'mp/direct', '--body', file]);
    assert.equal(put.code, 0, put.stderr);
    for (const chunkSize of [128 * KiB, 100 * KiB + 7]) {
      const dest = join(dir, `direct-${chunkSize}.raw`);
      const r = await downloadFileMultipart({
        client: s3.client, bucket: s3.bucket, key: 'mp/direct', dest, sha256: sha256(data),
        chunkSize, parallel: 3, maxParallel: 3, preload: 4,
      });
      assert.equal(r.chunks, Math.ceil(data.length / chunkSize));
      assert.ok((await readFile(dest)).equals(data), `chunk size ${chunkSize}`);
    }
  });

  it('a disk that fills up fails the download with one sentence and leaves nothing, whether the chunk that does not fit goes direct or buffered', async () => {
    // A tmpfs smaller than the object: some chunk is written short (the kernel takes what fits),
    // which Node reports without an error; a file with a hole must never be renamed into place.
    const mnt = join(dir, 'small-fs');
    await mkdir(mnt);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=3000k', 'tmpfs', mnt]);
    try {
      for (const chunkSize of [128 * KiB, 100 * KiB + 7]) {
        const dest = join(mnt, `full-${chunkSize}.raw`);
        await assert.rejects(
          downloadFileMultipart({
            client: s3.client, bucket: s3.bucket, key: 'mp/by-aws', dest, sha256: sha256(data),
            chunkSize, parallel: 3, maxParallel: 3, preload: 4,
          }),
          (err: unknown) => err instanceof DroverError && err.code === 'IO_ERROR' && /^Writing .*full-.*\.partial at byte \d+ failed: no space left on the device \(ENOSPC\)\.$/.test(err.message),
        );
        assert.deepEqual(await readdir(mnt), [], `chunk size ${chunkSize}: no file, no partial file`);
      }
    } finally {
      await run('umount', [mnt]);
    }
  });

  it('restores right where the address space is limited and WebAssembly memory is refused (plain shared buffers, written buffered)', async () => {
    // V8 reserves ~10 GiB of address space per wasm memory: under a 16 GB RLIMIT_AS the first
    // pool buffer may be page-aligned WebAssembly memory, the others cannot be.
    const script = join(dir, 'limited-restore.mjs');
    const dest = join(dir, 'limited.raw');
    const lib = new URL('../../src/storage/s3/', import.meta.url).href;
    await writeFile(script, [
      `import { createS3Client } from '${lib}client.js';`,
      `import { downloadFileMultipart } from '${lib}multipart-download.js';`,
      `const [endpoint, bucket, dest, sha256] = process.argv.slice(2);`,
      `const client = createS3Client({ endpoint, bucket, region: 'us-east-1', path_style: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });`,
      `const r = await downloadFileMultipart({ client, bucket, key: 'mp/by-aws', dest, sha256, chunkSize: 128 * 1024, parallel: 3, maxParallel: 3, preload: 4 });`,
      `process.stdout.write(JSON.stringify(r));`,
    ].join('\n'));
    const r = await run('prlimit', [`--as=${16e9}`, process.execPath, script, s3.endpoint, s3.bucket, dest, sha256(data)]);
    assert.equal((JSON.parse(r.stdout) as { size: number }).size, data.length);
    assert.ok((await readFile(dest)).equals(data));
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

  it('sends parts with an unsigned payload over http to s3rver, still verified by Content-MD5: a corrupted part is refused and no object appears', async () => {
    const client = createS3Client({ ...s3.settings, maxAttempts: 1 });
    const seen: { sha: string | undefined; md5: string | undefined }[] = [];
    let corrupt = false;
    // Finalize step, after signing: what goes on the wire.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const req = args.request as { headers: Record<string, string>; body?: unknown };
        if (context.commandName === 'UploadPartCommand') {
          seen.push({ sha: req.headers['x-amz-content-sha256'], md5: req.headers['content-md5'] });
          if (corrupt && Buffer.isBuffer(req.body)) {
            const bad = Buffer.from(req.body);
            bad[0] = (bad[0] ?? 0) ^ 0xff;
            req.body = bad;
          }
        }
        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low', name: 'testWireTap' },
    );
    try {
      const r = await uploadFileMultipart({ client, bucket: s3.bucket, key: 'mp/unsigned', file, chunkSize: 1024 * KiB, parallel: 2, maxParallel: 2 });
      assert.equal(r.sha256, sha256(data));
      assert.equal(seen.length, 4);
      for (const h of seen) {
        assert.equal(h.sha, UNSIGNED_PAYLOAD);
        assert.match(h.md5 ?? '', /^[A-Za-z0-9+/]{22}==$/);
      }
      const out = join(dir, 'unsigned-get');
      const get = await s3.aws(['s3api', 'get-object', '--bucket', s3.bucket, '--key', 'mp/unsigned', out]);
      assert.equal(get.code, 0, get.stderr);
      assert.ok((await readFile(out)).equals(data));

      corrupt = true;
      await assert.rejects(
        uploadFileMultipart({ client, bucket: s3.bucket, key: 'mp/corrupt', file, chunkSize: 1024 * KiB, parallel: 2, maxParallel: 2, partAttempts: 2 }),
        (err: unknown) => err instanceof DroverError && /BadDigest|Content-MD5|MD5/i.test(err.message),
      );
      const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', 'mp/corrupt']);
      assert.notEqual(head.code, 0, 'no object after a refused part');
    } finally {
      client.destroy();
    }
  });

  it('restores right when chunks arrive out of order: later chunks are written while the first is held up', async () => {
    const put = await s3.aws(['s3api', 'put-object', '--bucket', s3.bucket, '--key', 'mp/ooo', '--body', file]);
    assert.equal(put.code, 0, put.stderr);
    const client = createS3Client({ ...s3.settings });
    let firstArrived = 0;
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const range = (args.request as { headers: Record<string, string> }).headers['range'];
        const out = await next(args);
        if (context.commandName === 'GetObjectCommand' && range?.startsWith('bytes=0-') === true) {
          await new Promise((r) => setTimeout(r, 700));
          firstArrived = Date.now();
        }
        return out;
      },
      { step: 'finalizeRequest', priority: 'low', name: 'testSlowFirstChunk' },
    );
    const progress: { done: number; at: number }[] = [];
    const dest = join(dir, 'ooo.raw');
    try {
      const r = await downloadFileMultipart({
        client, bucket: s3.bucket, key: 'mp/ooo', dest, sha256: sha256(data),
        chunkSize: 256 * KiB, parallel: 4, maxParallel: 4, preload: 6,
        onProgress: (done) => progress.push({ done, at: Date.now() }),
      });
      assert.equal(r.chunks, 13);
      assert.ok(r.maxInFlight <= 4);
      assert.ok(firstArrived > 0, 'the first chunk was delayed');
      const before = progress.filter((p) => p.at < firstArrived);
      assert.ok(before.length >= 3, `chunks written while the first was held: ${before.length}`);
      assert.equal(progress.at(-1)?.done, data.length);
      assert.ok((await readFile(dest)).equals(data));
      await assert.rejects(stat(`${dest}.partial`), { code: 'ENOENT' });
    } finally {
      client.destroy();
    }
  });
});
