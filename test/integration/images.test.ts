/**
 * Images end to end, every part real: etcd, an S3 image store on s3rver,
 * awscli as the independent client, `drover image` as a subprocess, a
 * `drover agent` process, qemu (TCG) and the disk-marker test guest.
 *
 *  - import: format from qemu-img (a qcow2 named .img), sha256 recorded and
 *    in the object's metadata, as awscli sees it, plain progress lines;
 *  - an image disk boots: the guest reads, as /dev/vda, the marker record
 *    written into the image before import, through a qcow2 overlay in the
 *    VM's folder backed by the host's cached copy, which the guest's writes
 *    leave intact;
 *  - image delete is refused while a VM uses the image;
 *  - a corrupted object in the store is refused on every download, reported,
 *    never cached, and the VM ends in ERROR saying why;
 *  - REQUESTED_DELETE removes the VM folder only; vacuum then removes the
 *    cached image, and image delete removes the object;
 *  - an image store that cannot be reached: the VM waits in STARTING, its
 *    record's error says why (one event), and it starts once the store is
 *    back, the error cleared.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ImageRecord } from '../../src/contract/image-record.js';
import { QemuImg } from '../../src/storage/qemu-img.js';
import { startCluster, waitForSerialText, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { MARKER_DISK_BYTES, SECTOR_BYTES } from '../helpers/disk-marker.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';
import { runDrover, type RunResult } from '../cli/helpers.js';

const run = promisify(execFile);
const FAKE_BOOT = '0badc0de-0000-4000-8000-000000000001';
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('images end to end (s3rver, awscli, agent, qemu)', () => {
  let etcd: TestEtcd;
  let s3: TestS3;
  let cluster: Cluster;
  let guest: GuestFiles;
  let agent: AgentProcess;
  let marker: ImageRecord;
  let vm1: string;
  const drover = (args: string[]): Promise<RunResult> =>
    runDrover([...args, '--etcd', etcd.endpoint, '--prefix', cluster.prefix], { env: s3.env });

  before(async () => {
    [etcd, s3, guest] = await Promise.all([startTestEtcd(), startTestS3(), ensureGuest()]);
    cluster = await startCluster(etcd);
    agent = await cluster.startAgent('hv1', { config: { image_download_attempts: 2 }, env: s3.env });
  });
  after(async () => {
    await cluster?.close();
    await s3?.close();
    await etcd?.close();
  });

  it('imports a qcow2 named .img into the S3 store, as awscli sees it', async () => {
    const set = await drover(['image', 'store', 'set', 's3', '--endpoint', s3.endpoint, '--bucket', s3.bucket, '--path-style', '--key-prefix', 'fleet/']);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, `Image store set: s3 s3://${s3.bucket}/fleet/ (${s3.endpoint}, region us-east-1, path-style).\n`);

    // A marker disk with one record of an earlier "boot" in region 0, as qcow2.
    const raw = Buffer.alloc(MARKER_DISK_BYTES);
    const rec = `DROVER-MARK ${FAKE_BOOT} 0 7 1700000000000 -`.padEnd(SECTOR_BYTES - 1) + '\n';
    raw.write(rec, 7 * SECTOR_BYTES);
    await writeFile(join(cluster.dir, 'marker.raw'), raw);
    const file = join(cluster.dir, 'marker.img');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(cluster.dir, 'marker.raw'), file]);
    const bytes = await readFile(file);

    const res = await drover(['image', 'import', file, '--name', 'marker', '--version', '1']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`^Imported marker:1 as [0-9a-f-]{36} \\(qcow2, [0-9.]+ KiB, sha256 ${sha256(bytes)}\\)\\.\\n$`));
    // Not a terminal: plain progress lines with percent, bytes and rate, then a summary.
    assert.match(res.stderr, /^upload marker:1 {2}\d+% {2}.*\/s/m);
    assert.match(res.stderr, new RegExp(`^upload marker:1 {2}${(bytes.length / 1024).toFixed(1)} KiB {2}.*/s {2}0:\\d\\d {2}stored in s3://${s3.bucket}/fleet/\\n$`, 'm'));

    const got = await drover(['image', 'get', 'marker:1', '--json']);
    marker = JSON.parse(got.stdout) as ImageRecord;
    assert.deepEqual(
      { format: marker.format, size: marker.size, virtual_size: marker.virtual_size, sha256: marker.sha256, state: marker.state, source: marker.source },
      { format: 'qcow2', size: bytes.length, virtual_size: MARKER_DISK_BYTES, sha256: sha256(bytes), state: 'active', source: { type: 'file', path: file } },
    );

    const head = await s3.aws(['s3api', 'head-object', '--bucket', s3.bucket, '--key', `fleet/images/${marker.uuid}`]);
    assert.equal(head.code, 0, head.stderr);
    const meta = JSON.parse(head.stdout) as { ContentLength: number; Metadata: { sha256: string } };
    assert.deepEqual({ length: meta.ContentLength, sha256: meta.Metadata.sha256 }, { length: bytes.length, sha256: sha256(bytes) });
    const copy = join(cluster.dir, 'copy-by-awscli');
    assert.equal((await s3.aws(['s3', 'cp', `s3://${s3.bucket}/fleet/images/${marker.uuid}`, copy])).code, 0);
    assert.equal(sha256(await readFile(copy)), sha256(bytes), 'awscli downloads the same bytes');
    const ls = await s3.aws(['s3', 'ls', `s3://${s3.bucket}/fleet/images/`]);
    assert.match(ls.stdout, new RegExp(` ${bytes.length} ${marker.uuid}\\n`));

    const list = await drover(['image', 'list', '-H']);
    assert.match(list.stdout, new RegExp(`^${marker.uuid}  marker  1 +qcow2 .* active `));
  });

  it('boots a VM whose disk is an overlay of the cached image: the guest reads the image as /dev/vda', async () => {
    vm1 = await cluster.createVm({ spec: { boot: { kernel: guest.kernel, initrd: guest.initrdDiskMarker, cmdline: 'console=ttyS0 quiet' }, disks: [{ image: 'marker', size: 8 }] } });
    const rec = await cluster.waitForStatus(vm1, 'RUNNING', 90_000);
    const serial = (rec.runtime as { serial_log: string }).serial_log;
    // It found the record written into the image, claimed the next region, and writes there.
    await waitForSerialText(serial, new RegExp(`DROVER-MARK-SEEN \\S+ region 1 saw ${FAKE_BOOT}:7`), 60_000);
    await waitForSerialText(serial, /^DROVER-MARK \S+ 1 2 /m, 30_000);

    const overlay = join(agent.stateDir, 'vms', vm1, 'disks', 'disk0.qcow2');
    const cached = join(agent.stateDir, 'images', marker.sha256);
    const info = await new QemuImg().info(overlay, { shared: true });
    assert.deepEqual(info, { format: 'qcow2', virtualSize: 8 * 1024 * 1024, backingFile: cached, backingFormat: 'qcow2' });
    // qemu got both files as descriptors (docs/security.md, "Host paths"): it holds them open, and its argv names neither.
    const pid = (rec.runtime as { pid: number }).pid;
    const fdDir = `/proc/${pid}/fd`;
    const open = await Promise.all((await readdir(fdDir)).map((fd) => readlink(join(fdDir, fd)).catch(() => '')));
    assert.ok(open.includes(overlay), 'qemu holds the overlay');
    assert.ok(open.includes(cached), 'qemu holds the cached image, the overlay\'s backing file');
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    assert.ok(!cmdline.includes(overlay) && !cmdline.includes(cached), 'no host path on qemu\'s command line');
    assert.equal(sha256(await readFile(cached)), marker.sha256, 'the guest\'s writes went to the overlay, not the cached image');
  });

  it('refuses to delete an image a VM uses', async () => {
    const res = await drover(['image', 'delete', 'marker:1']);
    assert.equal(res.code, 1);
    assert.equal(res.stderr, `drover: Image marker:1 is used by VM vm-${vm1.slice(0, 8)}; delete those VMs first.\n`);
  });

  it('refuses a corrupted download on every try, caches nothing, and the VM says why', async () => {
    const file = join(cluster.dir, 'small.raw');
    const bytes = Buffer.alloc(1024 * 1024, 0x42);
    await writeFile(file, bytes);
    const res = await drover(['image', 'import', file, '--version', '1']);
    assert.equal(res.code, 0, res.stderr);
    const image = JSON.parse((await drover(['image', 'get', 'small:1', '--json'])).stdout) as ImageRecord;
    assert.equal(image.format, 'raw');
    // Corrupt the object behind drover's back, with the independent client.
    const bad = Buffer.from(bytes);
    bad[4096] = 0x43;
    await writeFile(join(cluster.dir, 'bad'), bad);
    assert.equal((await s3.aws(['s3', 'cp', join(cluster.dir, 'bad'), `s3://${s3.bucket}/fleet/images/${image.uuid}`])).code, 0);

    const uuid = await cluster.createVm({ spec: { disks: [{ image: 'small:1' }] } });
    const rec = await cluster.waitForStatus(uuid, 'ERROR', 60_000);
    assert.match(
      String(rec.error),
      new RegExp(`^Image small:1 \\(${image.uuid}\\) failed its sha256 check in 2 downloads from the image store \\(.*sha256 [0-9a-f]{12}… instead of ${image.sha256.slice(0, 12)}…, so it was refused\\); the copy in the store is corrupt, so re-import the image\\.$`),
    );
    assert.equal(rec.runtime, undefined, 'no qemu ran');
    const refused = (await cluster.events.list()).filter((e) => e.event === 'image.refused');
    assert.equal(refused.length, 2);
    const cache = await readdir(join(agent.stateDir, 'images'));
    assert.deepEqual(cache, [marker.sha256], 'the corrupt image is not in the cache, nor any partial download');
    await cluster.patchVm(uuid, { status: 'REQUESTED_DELETE' });
    await cluster.waitForVm(uuid, (v) => v === null, 30_000, 'the ERROR VM to be deleted');
  });

  it('REQUESTED_DELETE removes the VM folder; vacuum then the cached image; image delete the object', async () => {
    await cluster.patchVm(vm1, { status: 'REQUESTED_DELETE', force_stop: true });
    await cluster.waitForVm(vm1, (v) => v === null, 60_000, 'VM 1 to be deleted');
    assert.equal(await stat(join(agent.stateDir, 'vms', vm1)).catch(() => null), null);
    assert.deepEqual(await readdir(join(agent.stateDir, 'images')), [marker.sha256], 'the cache keeps images until vacuum');

    const vac = await runDrover(['image', 'vacuum', '--state-dir', agent.stateDir, '--min-age', '0']);
    assert.equal(vac.code, 0, vac.stderr);
    assert.match(vac.stdout, new RegExp(`^removed ${marker.sha256} \\(.*\\)\\nRemoved 1 cached image \\(.*\\); 0 kept\\.\\n$`));
    assert.deepEqual(await readdir(join(agent.stateDir, 'images')), []);

    const del = await drover(['image', 'delete', 'marker:1']);
    assert.equal(del.code, 0, del.stderr);
    const ls = await s3.aws(['s3', 'ls', `s3://${s3.bucket}/fleet/images/${marker.uuid}`]);
    assert.equal(ls.stdout, '', 'the object is gone');
    assert.equal((await drover(['image', 'get', marker.uuid])).code, 1);
  });
  it('an unreachable image store: the VM waits in STARTING, its error says why, an event too; it starts once the store is back', async () => {
    const file = join(cluster.dir, 'wait.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', file, '4M']);
    assert.equal((await drover(['image', 'import', file, '--name', 'wait', '--version', '1'])).code, 0);
    // The store moves to a port nothing listens on.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const storeArgs = ['--bucket', s3.bucket, '--path-style', '--key-prefix', 'fleet/'];
    assert.equal((await drover(['image', 'store', 'set', 's3', '--endpoint', `http://127.0.0.1:${port}`, ...storeArgs])).code, 0);

    const uuid = await cluster.createVm({ spec: { boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: 'console=ttyS0 quiet' }, disks: [{ image: 'wait:1' }] } });
    const waiting = await cluster.waitForVm(uuid, (v) => typeof v?.error === 'string' && v.error !== '', 60_000, 'the record to say why the VM waits');
    assert.equal(waiting?.status, 'STARTING');
    assert.match(String(waiting?.error), new RegExp(`^Image wait:1 could not be fetched from the image store in 2 tries \\(.*127\\.0\\.0\\.1:${port}.*\\); the agent keeps trying\\.$`));
    const event = await cluster.waitForEvent((e) => e.vm === uuid && e.event === 'vm.error', 10_000, 'the vm.error event');
    assert.equal(event.level, 'warn');
    assert.match(event.message, /^VM \S+ cannot start on hv1 yet: Image wait:1 could not be fetched/);

    // Still retrying, still saying so (the retries keep the sentence; no new event for the same one).
    await new Promise((r) => setTimeout(r, 4000));
    const still = await cluster.getVm(uuid);
    assert.deepEqual([still?.status, still?.error], ['STARTING', waiting?.error]);
    assert.equal((await cluster.events.list()).filter((e) => e.vm === uuid && e.event === 'vm.error').length, 1);

    assert.equal((await drover(['image', 'store', 'set', 's3', '--endpoint', s3.endpoint, ...storeArgs])).code, 0);
    const running = await cluster.waitForStatus(uuid, 'RUNNING', 90_000);
    assert.equal(running.error, '', 'the error is cleared once it starts');
    await cluster.patchVm(uuid, { status: 'REQUESTED_DELETE', force_stop: true });
    await cluster.waitForVm(uuid, (v) => v === null, 60_000, 'the VM to be deleted');
  });
});
