/**
 * `drover vm backup|restore` and `drover backup list|delete`: the real
 * bin/drover against a real etcd and a real S3-compatible server (s3rver in
 * this process, reached by the subprocess), cross-checked with awscli.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BackupManifest } from '../../src/storage/backup.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';
import { cluster, stdoutJson, vmRecord, type Cluster } from './helpers.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

describe('drover vm backup / restore, backup list / delete (real etcd, s3rver, awscli)', () => {
  let etcd: TestEtcd;
  let s3: TestS3;
  let c: Cluster;
  let dir: string;
  let env: Record<string, string>;
  const uuid = randomUUID();
  let raw: string;
  let qcow2: string;
  let rawBytes: Buffer;

  before(async () => {
    [etcd, s3] = await Promise.all([startTestEtcd(), startTestS3()]);
    c = cluster(etcd);
    dir = await mkdtemp(join(tmpdir(), 'drover-cli-backup-'));
    raw = join(dir, 'disk0.raw');
    qcow2 = join(dir, 'disk1.qcow2');
    rawBytes = randomBytes(11 * MiB + 7);
    await writeFile(raw, rawBytes);
    await run('qemu-img', ['create', '-f', 'qcow2', qcow2, '16M']);
    env = {
      ...s3.env,
      DROVER_S3_ENDPOINT: s3.endpoint,
      DROVER_S3_BUCKET: s3.bucket,
      DROVER_S3_PATH_STYLE: '1',
      DROVER_S3_DOWNLOAD_CHUNK_SIZE: String(MiB),
      DROVER_PARALLEL_UPLOADS: '2',
      DROVER_PRELOAD: '4',
    };
    await c.putVm(vmRecord(uuid, 'web-1', { status: 'STOP', spec: { vcpus: 1, memory: 256, disks: [{ path: raw }, { path: qcow2 }] } }));
  });
  after(async () => {
    await Promise.all([etcd.close(), s3.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('backs up a stopped VM, lists it, restores it in place and --as a new VM, deletes it', async () => {
    const b = await c.drover(['vm', 'backup', 'web-1', '--name', 'nightly'], { env });
    assert.equal(b.code, 0, b.stderr);
    const id = b.stdout.trim();
    assert.match(id, /^\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    assert.match(b.stderr, /disk 0.*done/);
    const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', `backups/${uuid}/${id}/manifest.json`]);
    assert.equal(head.code, 0, head.stderr);

    const list = stdoutJson<BackupManifest[]>(await c.drover(['backup', 'list', 'web-1', '--json'], { env }));
    assert.deepEqual(list.map((m) => [m.id, m.name, m.disks.length]), [[id, 'nightly', 2]]);
    const text = await c.drover(['backup', 'list'], { env });
    assert.match(text.stdout, /^ID\s+NAME\s+VM/);
    assert.match(text.stdout, new RegExp(`${id}\\s+nightly\\s+web-1`));

    await writeFile(raw, Buffer.alloc(rawBytes.length)); // the disk is damaged
    const r = await c.drover(['vm', 'restore', 'web-1', 'nightly'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await readFile(raw)).equals(rawBytes), 'restored in place, bit for bit');

    const as = await c.drover(['vm', 'restore', 'web-1', id, '--as', 'web-2', '--dir', dir, '--json'], { env });
    const record = stdoutJson<{ uuid: string; name: string; status: string; spec: { disks: Array<{ path: string }> } }>(as);
    assert.equal(record.status, 'REQUESTED_NEW');
    assert.deepEqual(record.spec.disks.map((d) => d.path), [join(dir, 'web-2', 'disk-0'), join(dir, 'web-2', 'disk-1')]);
    assert.ok((await readFile(join(dir, 'web-2', 'disk-0'))).equals(rawBytes));
    assert.ok((await readFile(join(dir, 'web-2', 'disk-1'))).equals(await readFile(qcow2)));
    assert.equal((await c.getVm(record.uuid))?.name, 'web-2');

    const orphan = `backups/${uuid}/20261123T000000Z-abcdef/disk-0`;
    assert.equal((await s3.aws(['s3api', 'put-object', '--bucket', s3.bucket, '--key', orphan, '--body', qcow2])).code, 0);
    const young = await c.drover(['backup', 'clean', 'web-1'], { env });
    assert.equal(young.stdout, 'No incomplete backups to remove.\n', young.stderr);
    const clean = stdoutJson<{ removed: string[] }>(await c.drover(['backup', 'clean', '--older-than', '0', '--json'], { env }));
    assert.deepEqual(clean.removed, [`backups/${uuid}/20261123T000000Z-abcdef/`]);

    const d = await c.drover(['backup', 'delete', id], { env });
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(stdoutJson<BackupManifest[]>(await c.drover(['backup', 'list', '--json'], { env })), []);
  });

  it('refuses a running VM and a missing bucket with one sentence', async () => {
    const running = randomUUID();
    await c.putVm(vmRecord(running, 'busy', { status: 'RUNNING', spec: { vcpus: 1, memory: 256, disks: [{ path: raw }] } }));
    const r = await c.drover(['vm', 'backup', 'busy'], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^drover: VM busy is RUNNING; stop it first .*\.\n$/);
    const noBucket = await c.drover(['backup', 'list'], { env: { ...env, DROVER_S3_BUCKET: '' } });
    assert.equal(noBucket.code, 2, noBucket.stderr);
    assert.match(noBucket.stderr, /--s3-bucket/);
  });
});
