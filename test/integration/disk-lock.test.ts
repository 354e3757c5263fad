/**
 * Fencing layer 3 on its own (ARCHITECTURE.md, "Fencing"): qemu's image
 * locking refuses a second writer on a disk a running qemu holds. Real etcd,
 * real `drover agent` processes, real qemu (TCG), the marker guest
 * (initrd-disk-marker.gz) on a raw disk under the agents' shared_storage.
 *
 * The last test is the negative control of the failover tests' disk proof
 * (test/helpers/disk-marker.ts): with locking switched off, two copies do
 * write the disk at once, and the proof rejects that disk.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { vmSpecSchema } from '../../src/contract/vm-record.js';
import { QemuHypervisor } from '../../src/hypervisor/qemu/qemu-hypervisor.js';
import { DroverError } from '../../src/lib/errors.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startCluster, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { assertSequentialBoots, createMarkerDisk, liveQemus, markerBoots, markerVmSpec, ofdLocksOn, readMarkerDisk, waitForMarkers, type MarkerBoot } from '../helpers/disk-marker.js';
import { confinedOptions } from '../helpers/confined.js';

/** qemu's refusal, as qemu 7.2 words it over two lines ("Failed to get "write" lock" / "Is another process using the image [PATH]?"). */
const LOCK_ERROR = /Failed to get "write" lock|another process using the image/;

describe('qemu image locking (fencing layer 3): one writer per shared disk', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let guest: GuestFiles;
  let shared: string;
  const direct: ChildProcess[] = [];

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    shared = join(cluster.dir, 'shared');
    await mkdir(shared);
    const config = { shared_storage: [shared] };
    await cluster.startAgent('hv1', { config });
    await cluster.startAgent('hv2', { config });
  });
  after(async () => {
    for (const c of direct) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await cluster?.close();
    await etcd?.close();
  });

  it('a second copy on the disk a running VM holds is refused, directly and through an agent (ERROR with qemu\'s sentence); it starts once the first stops', async (t) => {
    const disk = join(shared, 'locked.raw');
    await createMarkerDisk(disk);
    const a = await cluster.createVm({ name: 'holder', spec: markerVmSpec(guest, disk) }, 'hv1');
    const aPid = ((await cluster.waitForStatus(a, 'RUNNING')).runtime as { pid: number }).pid;
    const [first] = await waitForMarkers(disk, (b) => b.length === 1 && b[0]!.records.length >= 3, 60_000, 'the holder writing');
    assert.ok((await ofdLocksOn(disk)).length > 0, 'the holder\'s qemu holds OFD locks on the disk');

    // Directly: QemuHypervisor.start of another VM on the same disk.
    const hv = new QemuHypervisor({ runRoot: join(cluster.dir, 'direct-run'), accel: 'tcg', ...(await confinedOptions([cluster.dir])) });
    const c = randomUUID();
    const err = await hv.start({ uuid: c, name: 'direct', spec: vmSpecSchema.parse({ vcpus: 1, memory: 96, ...markerVmSpec(guest, disk) }) }).then(
      () => assert.fail('a second qemu started on a locked disk'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof DroverError, `a DroverError, not ${String(err)}`);
    assert.equal(err.code, 'START_FAILED');
    assert.match(err.message, LOCK_ERROR);
    assert.ok(err.message.includes(disk), `the message names the disk: ${err.message}`);
    t.diagnostic(`QemuHypervisor.start: ${err.code} (retryable: ${String(err.retryable)}): ${err.message}`);
    assert.deepEqual(await liveQemus(c), [], 'no qemu is left of the refused start');
    await hv.detachAll();

    // Through an agent: another record on hv2 with the same disk.
    const b = await cluster.createVm({ name: 'second', spec: markerVmSpec(guest, disk) }, 'hv2');
    const refused = await cluster.waitForStatus(b, 'ERROR', 30_000);
    assert.match(String(refused.error), LOCK_ERROR);
    assert.ok(String(refused.error).includes(disk), `the record's error names the disk: ${String(refused.error)}`);
    assert.ok((refused.log as string[]).some((l) => / - start failed: /.test(l)), 'the log says the start failed');
    t.diagnostic(`record error: ${String(refused.error)}`);
    assert.deepEqual(await liveQemus(b), [], 'hv2 runs no qemu for it');
    await cluster.waitForEvent((e) => e.event === 'vm.error' && e.vm === b, 5000, 'a vm.error event for it');

    // The holder never noticed: same pid, still RUNNING, the only boot on the disk, still writing.
    const holder = await cluster.getVm(a);
    assert.equal(holder?.status, 'RUNNING');
    assert.equal((holder?.runtime as { pid: number }).pid, aPid);
    const later = await waitForMarkers(disk, (bs) => bs.length === 1 && bs[0]!.last.n >= first!.last.n + 2, 10_000, 'the holder still writing');
    assert.equal(later[0]!.bootId, first!.bootId);

    // Once the holder stops, the same start goes through: it was the lock that refused it.
    await cluster.patchVm(a, { status: 'TO_STOP', force_stop: true });
    await cluster.waitForStatus(a, 'STOP', 30_000);
    await cluster.patchVm(b, { status: 'REQUESTED_START' });
    await cluster.waitForStatus(b, 'RUNNING', 30_000);
    await waitForMarkers(disk, (bs) => bs.length === 2 && bs[1]!.records.length >= 3, 60_000, 'the second copy writing');
    const proof = assertSequentialBoots(await readMarkerDisk(disk), 2);
    assert.equal(proof.boots[0]!.bootId, first!.bootId);
    t.diagnostic(`holder's last record to the second copy's first: ${proof.gapsMs[0]} ms`);
  });

  it('negative control: with locking off (what layer 3 prevents), two copies write the disk at once and the disk proof rejects it', async (t) => {
    const disk = join(shared, 'unlocked.raw');
    await createMarkerDisk(disk);
    const boot = (i: number): ChildProcess => {
      // drover's disk shape (q35, virtio-blk-pci, raw over a file node), with locking=off on the file node.
      const argv = [
        '-machine', 'q35', '-accel', 'tcg', '-m', '96', '-nodefaults', '-display', 'none', '-serial', 'null',
        '-kernel', guest.kernel, '-initrd', guest.initrdDiskMarker, '-append', 'console=ttyS0 quiet',
        '-blockdev', `driver=file,node-name=f${i},filename=${disk},locking=off`,
        '-blockdev', `driver=raw,node-name=d${i},file=f${i}`,
        '-device', `virtio-blk-pci,drive=d${i}`,
      ];
      const child = spawn('qemu-system-x86_64', argv, { stdio: 'ignore' });
      direct.push(child);
      return child;
    };
    const one = boot(1);
    // Once the first has claimed region 0, the second takes region 1: both write their own sectors.
    await waitForMarkers(disk, (b) => b.length === 1, 60_000, 'the first copy writing');
    const two = boot(2);
    // 8 records of the second (over 2 s) while the first goes on.
    await waitForMarkers(disk, (b) => b.length === 2 && b.every((x) => x.records.length >= 8), 60_000, 'both copies writing');
    assert.equal(one.exitCode, null, 'the first copy still runs');
    assert.equal(two.exitCode, null, 'the second copy runs beside it');
    one.kill('SIGKILL');
    two.kill('SIGKILL');
    const written = await readMarkerDisk(disk);
    const [b1, b2] = markerBoots(written.records) as [MarkerBoot, MarkerBoot];
    assert.deepEqual([b1.region, b2.region], [0, 1]);
    assert.ok(b1.last.n > b2.seen.get(b1.bootId)!, 'the first copy wrote on after the second had read the disk');
    assert.throws(() => assertSequentialBoots(written, 2), /the earlier copy was still writing after the later one booted/);
    t.diagnostic(`the second copy saw the first's record ${b2.seen.get(b1.bootId)}, the first wrote on to ${b1.last.n}; by the guests' clocks: ${b2.first.ms - b1.last.ms} ms`);
  });
});
