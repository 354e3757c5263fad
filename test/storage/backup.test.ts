/**
 * Backups of disk files to a real S3-compatible server (s3rver) and
 * restores from them: bit-identical disks (a qcow2 made by qemu-img and a
 * raw one), a backup visible only with its manifest (checked with awscli),
 * a failed backup that leaves nothing listed, delete.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DroverError } from '../../src/lib/errors.js';
import { createS3Client } from '../../src/storage/s3/client.js';
import { cleanIncompleteBackups, createBackup, deleteBackup, findBackup, listBackups, restoreBackup, type BackupTarget } from '../../src/storage/backup.js';
import type { BackupTransferSettings } from '../../src/storage/backup-settings.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const run = promisify(execFile);
const KiB = 1024;
const VM = { uuid: '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59', name: 'web-1' };
/** Small parts so an 8 MiB disk is many of them. */
const TRANSFER: BackupTransferSettings = {
  s3_upload_chunk_size: 512 * KiB, parallel_uploads: 2, max_parallel_uploads: 4,
  s3_download_chunk_size: 384 * KiB, parallel_downloads: 2, max_parallel_downloads: 4, preload: 4,
};

describe('backups to S3 (s3rver, awscli, qemu-img)', () => {
  let s3: TestS3;
  let dir: string;
  let qcow2: string;
  let raw: string;
  let target: BackupTarget;

  before(async () => {
    s3 = await startTestS3();
    dir = await mkdtemp(join(tmpdir(), 'drover-backup-'));
    qcow2 = join(dir, 'disk0.qcow2');
    raw = join(dir, 'disk1.raw');
    await writeFile(join(dir, 'data'), randomBytes(3 * 1024 * KiB));
    // A real qcow2 with data in it: qemu-img convert of random bytes.
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'data'), qcow2]);
    await run('qemu-img', ['resize', '-f', 'qcow2', qcow2, '8M']);
    await writeFile(raw, randomBytes(8 * 1024 * KiB));
    target = { client: s3.client, bucket: s3.bucket, transfer: TRANSFER };
  });
  after(async () => {
    await s3.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('backs up every disk, lists the backup, restores bit-identical disks', async () => {
    const progress = new Set<string>();
    const m = await createBackup({ ...target, onProgress: (what) => progress.add(what) }, VM, [qcow2, raw], 'nightly');
    assert.deepEqual([...progress], ['disk 0', 'disk 1']);
    assert.equal(m.disks.length, 2);
    const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', `backups/${VM.uuid}/${m.id}/manifest.json`]);
    assert.equal(head.code, 0, head.stderr);
    const listed = await listBackups(target, VM.uuid);
    assert.deepEqual(listed.map((b) => b.id), [m.id]);
    assert.equal(findBackup(listed, 'nightly').id, m.id);
    const out = [join(dir, 'r0.qcow2'), join(dir, 'r1.raw')];
    await restoreBackup(target, m, out);
    assert.ok((await readFile(out[0]!)).equals(await readFile(qcow2)));
    assert.ok((await readFile(out[1]!)).equals(await readFile(raw)));
    await run('qemu-img', ['check', '-f', 'qcow2', out[0]!]);
    await assert.rejects(restoreBackup(target, m, out), (e: unknown) => e instanceof DroverError && e.code === 'CONFLICT');
    await deleteBackup(target, m);
    assert.deepEqual(await listBackups(target, VM.uuid), []);
    const gone = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', m.disks[1]!.key]);
    assert.notEqual(gone.code, 0, 'the disk objects are deleted too');
  });

  it('a backup whose upload fails for good is never listed', async () => {
    const url = new URL(s3.endpoint);
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port) });
    const client = createS3Client({ ...s3.settings, endpoint: proxy.url, maxAttempts: 1 });
    try {
      let seen = 0;
      await assert.rejects(
        createBackup(
          { client, bucket: s3.bucket, transfer: TRANSFER, partTimeoutMs: 500, onProgress: (what, done) => {
            seen = done;
            if (what === 'disk 1' && done >= 1024 * KiB) proxy.suspend();
          } },
          VM, [qcow2, raw],
        ),
        (e: unknown) => e instanceof DroverError,
      );
      assert.ok(seen > 0);
      assert.deepEqual(await listBackups(target, VM.uuid), []);
      const ls = await s3.aws(['s3api', 'list-objects-v2', '--bucket', s3.bucket, '--prefix', `backups/${VM.uuid}/`]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.doesNotMatch(ls.stdout, /manifest\.json/);
    } finally {
      client.destroy();
      await proxy.close();
    }
  });

  it('cleans what an interrupted backup left: folders without a manifest, old enough; complete backups stay', async () => {
    const kept = await createBackup(target, VM, [raw]);
    const orphan = `backups/${VM.uuid}/20261123T000000Z-abcdef/disk-0`;
    const put = await s3.aws(['s3api', 'put-object', '--bucket', s3.bucket, '--key', orphan, '--body', raw]);
    assert.equal(put.code, 0, put.stderr);
    assert.deepEqual(await cleanIncompleteBackups(target, 60_000, VM.uuid), [], 'a fresh folder may still be uploading');
    // The failed backup above may have left its first disk too (its clean-up ran while the network was cut).
    const removed = await cleanIncompleteBackups(target, 60_000, VM.uuid, Date.now() + 120_000);
    assert.ok(removed.includes(`backups/${VM.uuid}/20261123T000000Z-abcdef/`), removed.join(' '));
    assert.ok(!removed.some((d) => d.includes(kept.id)));
    const ls = await s3.aws(['s3api', 'list-objects-v2', '--bucket', s3.bucket, '--prefix', `backups/${VM.uuid}/`]);
    const keys = (JSON.parse(ls.stdout) as { Contents: Array<{ Key: string }> }).Contents.map((o) => o.Key).sort();
    assert.deepEqual(keys, [`backups/${VM.uuid}/${kept.id}/disk-0`, `backups/${VM.uuid}/${kept.id}/manifest.json`]);
    const gone = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', orphan]);
    assert.notEqual(gone.code, 0);
    assert.deepEqual((await listBackups(target, VM.uuid)).map((b) => b.id), [kept.id]);
    const still = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', kept.disks[0]!.key]);
    assert.equal(still.code, 0, still.stderr);
  });
});
