/**
 * `drover vm backup|restore` and `drover backup list|delete`: the real
 * bin/drover against a real etcd and a real S3-compatible server (s3rver in
 * this process, reached by the subprocess), cross-checked with awscli.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BackupManifest } from '../../src/storage/backup.js';
import { ImageCache } from '../../src/storage/image-cache.js';
import { DiskPreparer } from '../../src/storage/prepare-disks.js';
import { QemuImg } from '../../src/storage/qemu-img.js';
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

  it('a restore --as that fails on its second disk leaves no disk and no folder, and never touches a file that was there', async () => {
    const b = await c.drover(['vm', 'backup', 'web-1'], { env });
    assert.equal(b.code, 0, b.stderr);
    const id = b.stdout.trim();
    const [m] = stdoutJson<BackupManifest[]>(await c.drover(['backup', 'list', 'web-1', '--json'], { env })).filter((x) => x.id === id);
    assert.ok(m);
    // Disk 1's object is replaced by other bytes of the same size: disk 0 restores, disk 1 fails its sha256.
    const other = join(dir, 'other-bytes');
    await writeFile(other, randomBytes(m.disks[1]!.size));
    assert.equal((await s3.aws(['s3', 'cp', '--only-show-errors', other, `s3://${s3.bucket}/${m.disks[1]!.key}`])).code, 0);

    const nested = join(dir, 'restores', 'deep');
    const r = await c.drover(['vm', 'restore', 'web-1', id, '--as', 'web-3', '--dir', nested], { env });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /sha256/i);
    await assert.rejects(stat(join(dir, 'restores')), { code: 'ENOENT' }, 'the directories the restore created are gone');
    assert.notEqual((await c.drover(['vm', 'get', 'web-3'])).code, 0, 'no record for the failed VM');

    // A folder that exists, with a file of the user's at disk-1 and another beside it.
    const mine = join(dir, 'web-4');
    await mkdir(mine);
    await writeFile(join(mine, 'notes'), 'keep me');
    const refused = await c.drover(['vm', 'restore', 'web-1', id, '--as', 'web-4', '--dir', dir], { env });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /sha256/i);
    assert.deepEqual((await readdir(mine)).sort(), ['notes'], 'disk-0 removed again, the user\'s file kept, the folder kept');
    await writeFile(join(mine, 'disk-1'), 'theirs');
    const conflict = await c.drover(['vm', 'restore', 'web-1', id, '--as', 'web-4', '--dir', dir], { env });
    assert.notEqual(conflict.code, 0);
    assert.match(conflict.stderr, /already exists/);
    assert.equal(await readFile(join(mine, 'disk-1'), 'utf8'), 'theirs', 'an existing file is never removed');
    assert.deepEqual((await readdir(mine)).sort(), ['disk-1', 'notes']);
    assert.equal((await c.drover(['backup', 'delete', id], { env })).code, 0);
  });

  it('backs up a stopped VM\'s image disk flattened; restores it in place and --as at the overlay path, without the image', async () => {
    // An agent's state dir as a start leaves it: a cached image, the VM's overlay on it, guest writes in the overlay.
    const state = join(dir, 'state');
    const vmUuid = randomUUID();
    const image = join(state, 'images', 'a'.repeat(64));
    const overlay = join(state, 'vms', vmUuid, 'disks', 'disk0.qcow2');
    await mkdir(join(state, 'images'), { recursive: true });
    await mkdir(join(state, 'vms', vmUuid, 'disks'), { recursive: true });
    await writeFile(join(dir, 'base.raw'), randomBytes(6 * MiB));
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', join(dir, 'base.raw'), image]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image, '-F', 'qcow2', overlay, '12M']);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 1M 2M', '-c', 'write -P 0xa5 10M 1M', overlay]);
    const expected = join(dir, 'img-expected.raw');
    await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', overlay, expected]);
    await c.putVm(vmRecord(vmUuid, 'img-1', { host: 'hv1', status: 'STOP', spec: { vcpus: 1, memory: 256, disks: [{ image: 'base:1', size: 12 }, { path: raw }] } }));

    const noState = await c.drover(['vm', 'backup', 'img-1'], { env });
    assert.equal(noState.code, 2, noState.stderr);
    assert.match(noState.stderr, /^drover: Disk 0 of VM img-1 is an image disk, .*--state-dir.*\.\n$/);

    const b = await c.drover(['vm', 'backup', 'img-1', '--state-dir', state, '--json'], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /flattening disk 0 \(image base:1\)/);
    const m = stdoutJson<BackupManifest>(b);
    assert.deepEqual(m.disks.map((d) => [d.source, d.image]), [[overlay, 'base:1'], [raw, undefined]]);
    // The object, as awscli downloads it, is a qcow2 with no backing file holding the disk as the guest saw it.
    const fetched = join(dir, 'img-fetched.qcow2');
    assert.equal((await s3.aws(['s3', 'cp', `s3://${s3.bucket}/${m.disks[0]!.key}`, fetched])).code, 0);
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', fetched])).stdout) as { format: string; 'backing-filename'?: string; 'virtual-size': number };
    assert.deepEqual([info.format, info['backing-filename'], info['virtual-size']], ['qcow2', undefined, 12 * MiB]);
    await run('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', fetched, expected]);

    // The image goes away (deleted, vacuumed) and the overlay is damaged: the backup alone restores the disk.
    await rm(image, { force: true });
    await writeFile(overlay, 'garbage');
    const r = await c.drover(['vm', 'restore', 'img-1', m.id, '--state-dir', state], { env });
    assert.equal(r.code, 0, r.stderr);
    await run('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', overlay, expected]);
    await run('qemu-img', ['check', '-q', '-f', 'qcow2', overlay]);

    // What the agent does before the next start keeps the restored disk as it is, image or no image.
    const before = await readFile(overlay);
    const preparer = new DiskPreparer({ vmsDir: join(state, 'vms'), cache: new ImageCache({ dir: join(state, 'images'), openStore: () => Promise.reject(new Error('no download expected')) }), resolveImage: () => Promise.resolve(null), qemuImg: new QemuImg() });
    const prepared = await preparer.prepare(vmUuid, { vcpus: 1, memory: 256, vnc: 'none', restart: 'never', disks: [{ image: 'base:1', size: 12 }] });
    assert.deepEqual(prepared.disks, [{ path: overlay, format: 'qcow2' }]);
    assert.ok((await readFile(overlay)).equals(before), 'prepare left the restored disk alone');

    const as = stdoutJson<{ uuid: string; spec: { disks: Array<Record<string, unknown>> } }>(
      await c.drover(['vm', 'restore', 'img-1', m.id, '--as', 'img-2', '--state-dir', state, '--dir', dir, '--json'], { env }),
    );
    assert.deepEqual(as.spec.disks, [{ image: 'base:1', size: 12 }, { path: join(dir, 'img-2', 'disk-1') }]);
    await run('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', join(state, 'vms', as.uuid, 'disks', 'disk0.qcow2'), expected]);
    assert.ok((await readFile(join(dir, 'img-2', 'disk-1'))).equals(await readFile(raw)));

    // A host without the overlay (never started there) is told so.
    const elsewhere = await c.drover(['vm', 'backup', 'img-1', '--state-dir', join(dir, 'other-state')], { env });
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stderr, /^drover: Disk 0 of VM img-1 \(image base:1\) has no overlay at .*\.\n$/);
  });

  it('flattens a stopped VM\'s path disk that is a qcow2 on a backing file: the backup restores without it', async () => {
    const base = join(dir, 'base.raw');
    const overlay = join(dir, 'on-base.qcow2');
    const baseBytes = randomBytes(2 * MiB);
    await writeFile(base, baseBytes);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay]);
    const vmId = randomUUID();
    await c.putVm(vmRecord(vmId, 'layered', { status: 'STOP', spec: { vcpus: 1, memory: 128, disks: [{ path: overlay }] } }));
    const b = await c.drover(['vm', 'backup', 'layered'], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /flattening disk 0 \(a qcow2 on .*base\.raw\)/);
    const id = b.stdout.trim();
    const as = await c.drover(['vm', 'restore', 'layered', id, '--as', 'layered-2', '--dir', dir], { env });
    assert.equal(as.code, 0, as.stderr);
    const restored = join(dir, 'layered-2', 'disk-0');
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', restored])).stdout) as { format: string; 'backing-filename'?: string };
    assert.equal(info.format, 'qcow2');
    assert.equal(info['backing-filename'], undefined, 'no backing file');
    await rm(base); // the restored disk needs it no more: it reads as the base's bytes on its own
    const flat = join(dir, 'layered-flat.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', restored, flat]);
    assert.ok((await readFile(flat)).equals(baseBytes));
    assert.equal((await c.drover(['backup', 'delete', id], { env })).code, 0);
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
