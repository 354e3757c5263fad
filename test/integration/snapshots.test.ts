/**
 * Snapshots end to end (docs/snapshots.md): the real CLI, a real `drover
 * agent`, real etcd and real qemu (TCG). The guest is the marker guest
 * (initrd-disk-marker.gz, scripts/build-guest.sh), which writes a numbered
 * record into its disk every 250 ms, fsynced, and prints it on the serial
 * console once it is on the disk; at boot it reads the disk and prints what
 * it found (DROVER-MARK-SEEN: each earlier boot's last record).
 *
 * The proof that a rollback of a running VM works: after `snapshot create`
 * returns, the guest writes more records; after `snapshot rollback` the
 * guest boots again and finds on its disk records up to one written before
 * the create returned, and none written after it. The disk itself, read
 * after the VM is stopped, agrees.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runDrover } from '../cli/helpers.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startCluster, waitUntil, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { MARKER_DISK_BYTES, markerBoots, readMarkerDisk, serialMarks } from '../helpers/disk-marker.js';

const run = promisify(execFile);

describe('snapshots of a running VM (real agent, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let guest: GuestFiles;

  const drover = (args: string[]) => runDrover([...args, '--etcd', etcd.endpoint, '--prefix', cluster.prefix], { timeoutMs: 180_000 });

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    await cluster.startAgent('hv1');
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  it('rollback: what the guest wrote after the snapshot is gone, what it wrote before is there, newer snapshots are deleted', async (t) => {
    const disk = join(cluster.dir, 'web.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(MARKER_DISK_BYTES)]);
    const uuid = await cluster.createVm({
      name: 'web',
      spec: { boot: { kernel: guest.kernel, initrd: guest.initrdDiskMarker, cmdline: 'console=ttyS0 quiet' }, disks: [{ path: disk }] },
    });
    const first = (await cluster.waitForStatus(uuid, 'RUNNING')).runtime as { pid: number; serial_log: string };
    const marks = () => serialMarks(first.serial_log);
    const lastMark = async () => (await marks()).at(-1)?.n ?? -1;
    await waitUntil(async () => ((await lastMark()) >= 3 ? true : undefined), 60_000, 'the guest to write records');
    const bootId = (await marks())[0]!.boot;

    // Everything printed before the request is on the disk before the snapshot is taken.
    const beforeRequest = await lastMark();
    const created = await drover(['vm', 'snapshot', 'create', 'web', 'before', '--wait=120']);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout, `Snapshot before of VM web (${uuid}) created.\n`);
    // The guest prints a record after writing it, so record last+1 may be on
    // the disk already (written, not yet printed); last+2 is written only after
    // last+1 is printed, which is after now, so after the snapshot.
    const afterCreate = (await lastMark()) + 2;
    await waitUntil(async () => ((await lastMark()) >= afterCreate + 3 ? true : undefined), 30_000, 'records after the snapshot');
    assert.equal(((await drover(['vm', 'snapshot', 'create', 'web', 'later'])).code), 0);
    const listed = await drover(['vm', 'snapshot', 'list', 'web', '-H']);
    assert.deepEqual(listed.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]), ['before', 'later']);
    const wroteUpTo = await lastMark();

    const rolled = await drover(['vm', 'snapshot', 'rollback', 'web', 'before', '--wait=120']);
    assert.equal(rolled.code, 0, rolled.stderr);
    assert.equal(rolled.stdout, `VM web (${uuid}) rolled back to snapshot before; deleted the newer snapshot later; it is running again.\n`);
    const vm = await cluster.waitForStatus(uuid, 'RUNNING');
    const second = vm.runtime as { pid: number; serial_log: string };
    assert.notEqual(second.pid, first.pid, 'stopped and started again');
    assert.deepEqual((vm.snapshots as Array<{ name: string }>).map((s) => s.name), ['before']);
    assert.equal((vm.snapshot_request as { state: string }).state, 'done');

    // The guest's own view after the rollback: the last record of the first boot it finds on its disk.
    const seenLine = await waitUntil(async () => {
      const text = await readFile(second.serial_log, 'utf8').catch(() => '');
      return /^DROVER-MARK-SEEN .* saw (\S+)$/m.exec(text)?.[1];
    }, 60_000, 'the guest to boot again and read its disk');
    const seen = new Map(seenLine.split(',').map((p) => [p.slice(0, p.lastIndexOf(':')), Number(p.slice(p.lastIndexOf(':') + 1))]));
    const found = seen.get(bootId);
    assert.ok(found !== undefined, `the rolled-back disk holds the first boot's records (saw ${seenLine})`);
    assert.ok(found >= beforeRequest, `record ${beforeRequest}, written before the snapshot, survived (found up to ${found})`);
    assert.ok(found < afterCreate, `records from ${afterCreate} on (up to ${wroteUpTo}), written after the snapshot, are gone; found up to ${found}`);
    t.diagnostic(`records before the request: up to ${beforeRequest}; in the snapshot: up to ${found}; written after it and gone: ${afterCreate}..${wroteUpTo}`);

    // The disk itself, once the VM is stopped, agrees.
    assert.equal((await drover(['vm', 'stop', 'web', '-F', '--wait=60'])).code, 0);
    const rawCopy = join(cluster.dir, 'web-after.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', disk, rawCopy]);
    const { records, malformed } = await readMarkerDisk(rawCopy);
    assert.deepEqual(malformed, []);
    const boots = markerBoots(records);
    const firstBoot = boots.find((b) => b.bootId === bootId);
    assert.equal(firstBoot?.last.n, found, 'the first boot ends on the disk where the snapshot was taken');
    assert.ok(boots.some((b) => b.bootId !== bootId && b.seen.get(bootId) === found), 'the second boot wrote its own records after it');

    // A stopped VM's snapshot goes through qemu-img.
    const deleted = await drover(['vm', 'snapshot', 'delete', 'web', 'before']);
    assert.equal(deleted.code, 0, deleted.stderr);
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', disk])).stdout) as { snapshots?: unknown[] };
    assert.equal(info.snapshots, undefined, 'no snapshot left in the file');
  });

  it('a disk that turns out raw (no format in the spec) is refused by the agent with a sentence naming it', async () => {
    const disk = join(cluster.dir, 'db.img');
    await run('qemu-img', ['create', '-q', '-f', 'raw', disk, '1M']);
    // Stopped: the agent reads the disk with qemu-img, nothing boots.
    const uuid = await cluster.createVm({ name: 'db', status: 'STOP', spec: { disks: [{ path: disk }] } });
    const res = await drover(['vm', 'snapshot', 'create', 'db', 'x', '--wait=60']);
    assert.equal(res.code, 1);
    assert.equal(res.stderr.trim().split('\n').at(-1), `drover: The snapshot create x of VM db (${uuid}) failed: Disk 1 (${disk}) is raw, and only qcow2 disks can hold snapshots.`);
    assert.equal((await cluster.getVm(uuid))?.status, 'STOP');
  });
});
