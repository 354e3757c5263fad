/**
 * `drover vm backup` of a RUNNING VM (docs/backups.md): the real CLI, a real
 * `drover agent`, real etcd, real qemu (TCG) and s3rver. The guest is the
 * marker guest (initrd-disk-marker.gz), which writes a numbered, fsynced
 * record into its qcow2 disk every 250 ms and prints it once it is on the
 * disk. It keeps writing during the backup.
 *
 * The proof: the backup, restored `--as` a new VM, holds the records up to
 * one printed before the backup was asked for and none written after the
 * command returned (the restored guest reads its disk at boot and says so;
 * the disk, read after it is stopped, agrees and passes `qemu-img check`).
 * The original VM ran throughout (same qemu pid) and its temporary snapshot
 * is gone. The same for a VM whose disk is an image disk (an overlay in the
 * agent's state dir): its backup is flattened, and the restored VM boots
 * from a self-contained qcow2 with no backing file.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runDrover } from '../cli/helpers.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { pidAlive, startCluster, waitUntil, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { MARKER_DISK_BYTES, markerBoots, readMarkerDisk, serialMarks } from '../helpers/disk-marker.js';
import { startTestS3, type TestS3 } from '../helpers/s3-server.js';

const run = promisify(execFile);

/** What a restored marker guest says it found on its disk at boot: boot id -> last record. */
async function recordsSeenAtBoot(serialLog: string): Promise<{ seen: Map<string, number>; line: string }> {
  const line = await waitUntil(async () => {
    const text = await readFile(serialLog, 'utf8').catch(() => '');
    return /^DROVER-MARK-SEEN .* saw (\S+)$/m.exec(text)?.[1];
  }, 60_000, 'the restored guest to boot and read its disk');
  return { seen: new Map(line.split(',').map((p) => [p.slice(0, p.lastIndexOf(':')), Number(p.slice(p.lastIndexOf(':') + 1))])), line };
}

/** The last record of boot `bootId` on a qcow2 marker disk, which must hold no malformed record and pass `qemu-img check`. */
async function lastRecordOnDisk(qcow2: string, rawCopy: string, bootId: string): Promise<number | undefined> {
  await run('qemu-img', ['check', '-q', qcow2]);
  await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, rawCopy]);
  const { records, malformed } = await readMarkerDisk(rawCopy);
  assert.deepEqual(malformed, []);
  return markerBoots(records).find((b) => b.bootId === bootId)?.last.n;
}

describe('backup of a running VM (real agent, real qemu, s3rver)', () => {
  let etcd: TestEtcd;
  let s3: TestS3;
  let cluster: Cluster;
  let guest: GuestFiles;

  const drover = (args: string[]) =>
    runDrover([...args, '--etcd', etcd.endpoint, '--prefix', cluster.prefix], { timeoutMs: 120_000, env: { ...s3.env, DROVER_S3_ENDPOINT: s3.endpoint, DROVER_S3_BUCKET: s3.bucket, DROVER_S3_PATH_STYLE: '1' } });

  let agent: AgentProcess;

  before(async () => {
    guest = await ensureGuest();
    [etcd, s3] = await Promise.all([startTestEtcd(), startTestS3()]);
    cluster = await startCluster(etcd);
    agent = await cluster.startAgent('hv1');
  });
  after(async () => {
    await cluster?.close();
    await Promise.all([etcd?.close(), s3?.close()]);
  });

  it('copies the disk at one point in time while the guest keeps writing; the VM keeps running and the snapshot is gone', async (t) => {
    const disk = join(cluster.dir, 'web.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(MARKER_DISK_BYTES)]);
    const uuid = await cluster.createVm({
      name: 'web',
      spec: { boot: { kernel: guest.kernel, initrd: guest.initrdDiskMarker, cmdline: 'console=ttyS0 quiet' }, disks: [{ path: disk }] },
    });
    const first = (await cluster.waitForStatus(uuid, 'RUNNING')).runtime as { pid: number; serial_log: string };
    const lastMark = async (log: string) => (await serialMarks(log)).at(-1)?.n ?? -1;
    await waitUntil(async () => ((await lastMark(first.serial_log)) >= 3 ? true : undefined), 60_000, 'the guest to write records');
    const bootId = (await serialMarks(first.serial_log))[0]!.boot;

    const beforeRequest = await lastMark(first.serial_log);
    const backup = await drover(['vm', 'backup', 'web', '--name', 'live']);
    assert.equal(backup.code, 0, backup.stderr);
    // Record last+1 may be on the disk already (written, not yet printed); last+2 is written after now.
    const afterBackup = (await lastMark(first.serial_log)) + 2;
    assert.match(backup.stdout, /^\d{8}T\d{6}Z-[0-9a-f]{6}\n$/);
    assert.match(backup.stderr, /snapshot create drover-backup-[0-9a-f]{12}/);

    // The VM ran throughout, still writes, and holds no snapshot.
    await waitUntil(async () => ((await lastMark(first.serial_log)) >= afterBackup + 1 ? true : undefined), 30_000, 'records after the backup');
    const vm = await cluster.getVm(uuid);
    assert.equal(vm?.status, 'RUNNING');
    assert.equal((vm?.runtime as { pid: number }).pid, first.pid, 'the same qemu');
    assert.ok(pidAlive(first.pid));
    assert.deepEqual(vm?.snapshots ?? [], []);
    assert.equal((vm?.snapshot_request as { op: string; state: string }).op, 'delete');
    const info = JSON.parse((await run('qemu-img', ['info', '-U', '--output=json', disk])).stdout) as { snapshots?: unknown[] };
    assert.equal(info.snapshots, undefined, 'no snapshot left in the file');

    const listed = JSON.parse((await drover(['backup', 'list', 'web', '--json'])).stdout) as Array<{ id: string; name: string; disks: Array<{ source: string }> }>;
    assert.deepEqual(listed.map((m) => [m.id, m.name, m.disks.map((d) => d.source)]), [[backup.stdout.trim(), 'live', [disk]]]);

    // Restored as a new VM, the guest reads its disk at boot: the first boot's records end where the backup was taken.
    const restored = await drover(['vm', 'restore', 'web', 'live', '--as', 'web-copy', '--dir', join(cluster.dir, 'restored')]);
    assert.equal(restored.code, 0, restored.stderr);
    const copyUuid = restored.stdout.trim();
    const copy = (await cluster.waitForStatus(copyUuid, 'RUNNING')).runtime as { serial_log: string };
    const { seen, line: seenLine } = await recordsSeenAtBoot(copy.serial_log);
    const found = seen.get(bootId);
    assert.ok(found !== undefined, `the backup holds the first boot's records (saw ${seenLine})`);
    assert.ok(found >= beforeRequest, `record ${beforeRequest}, written before the backup, is in it (found up to ${found})`);
    assert.ok(found < afterBackup, `records from ${afterBackup} on, written after the backup returned, are not; found up to ${found}`);
    t.diagnostic(`records before the request: up to ${beforeRequest}; in the backup: up to ${found}; after it: ${afterBackup}..`);

    // The restored disk itself, once its VM is stopped: a sound qcow2 that agrees.
    assert.equal((await drover(['vm', 'stop', 'web-copy', '-F', '--wait=60'])).code, 0);
    const copyDisk = join(cluster.dir, 'restored', 'web-copy', 'disk-0');
    assert.equal(await lastRecordOnDisk(copyDisk, join(cluster.dir, 'web-copy.raw'), bootId), found, 'the first boot ends on the disk where the backup was taken');
  });

  it('backs up a running VM\'s image disk flattened; restored --as, it boots without the image and holds the records up to the backup', async () => {
    // An image disk: a directory image store, a zeroed marker disk imported as a qcow2 image.
    assert.equal((await drover(['image', 'store', 'set', 'dir', join(cluster.dir, 'image-store')])).code, 0);
    const zero = join(cluster.dir, 'zero.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', zero, String(MARKER_DISK_BYTES)]);
    const imported = await drover(['image', 'import', zero, '--name', 'zero', '--version', '1']);
    assert.equal(imported.code, 0, imported.stderr);
    const uuid = await cluster.createVm({
      name: 'img',
      spec: { boot: { kernel: guest.kernel, initrd: guest.initrdDiskMarker, cmdline: 'console=ttyS0 quiet' }, disks: [{ image: 'zero:1' }] },
    });
    const first = (await cluster.waitForStatus(uuid, 'RUNNING', 90_000)).runtime as { pid: number; serial_log: string };
    const lastMark = async (log: string) => (await serialMarks(log)).at(-1)?.n ?? -1;
    await waitUntil(async () => ((await lastMark(first.serial_log)) >= 3 ? true : undefined), 60_000, 'the guest to write records');
    const bootId = (await serialMarks(first.serial_log))[0]!.boot;

    const noState = await drover(['vm', 'backup', 'img']);
    assert.equal(noState.code, 2, 'an image disk needs the state dir');
    const beforeRequest = await lastMark(first.serial_log);
    const backup = await drover(['vm', 'backup', 'img', '--name', 'live-img', '--state-dir', agent.stateDir]);
    assert.equal(backup.code, 0, backup.stderr);
    const afterBackup = (await lastMark(first.serial_log)) + 2;
    const vm = await cluster.getVm(uuid);
    assert.equal((vm?.runtime as { pid: number }).pid, first.pid, 'the same qemu');
    assert.deepEqual(vm?.snapshots ?? [], []);

    // Restored --as: a self-contained qcow2 at the new VM's overlay path, which its agent keeps and boots.
    const restored = await drover(['vm', 'restore', 'img', 'live-img', '--as', 'img-copy', '--state-dir', agent.stateDir]);
    assert.equal(restored.code, 0, restored.stderr);
    const copyUuid = restored.stdout.trim();
    const copyDisk = join(agent.stateDir, 'vms', copyUuid, 'disks', 'disk0.qcow2');
    const info = JSON.parse((await run('qemu-img', ['info', '-U', '--output=json', copyDisk])).stdout) as { 'backing-filename'?: string };
    assert.equal(info['backing-filename'], undefined, 'the restored disk is self-contained');
    const copy = (await cluster.waitForStatus(copyUuid, 'RUNNING', 90_000)).runtime as { serial_log: string };
    const { seen, line: seenLine } = await recordsSeenAtBoot(copy.serial_log);
    const found = seen.get(bootId);
    assert.ok(found !== undefined && found >= beforeRequest && found < afterBackup, `the backup holds records ${beforeRequest}..${afterBackup - 1} at most (found up to ${found}, saw ${seenLine})`);

    assert.equal((await drover(['vm', 'stop', 'img-copy', '-F', '--wait=60'])).code, 0);
    assert.equal(await lastRecordOnDisk(copyDisk, join(cluster.dir, 'img-copy.raw'), bootId), found, 'the first boot ends on the disk where the backup was taken');
  });
});
