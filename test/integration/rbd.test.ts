/**
 * An rbd disk against a real Ceph cluster: runs only where one is
 * configured, and says so when skipped.
 *
 *   DROVER_TEST_CEPH_CONF=/etc/ceph/ceph.conf   a ceph.conf whose cluster qemu can reach
 *   DROVER_TEST_CEPH_IMAGE=pool/name            an existing RBD image of at least 4 MiB
 *                                               that the test may write (the marker guest does)
 *   DROVER_TEST_CEPH_USER=admin                 the cephx user (optional)
 *
 * qemu needs its rbd block driver (Debian: qemu-block-extra). The marker
 * guest boots with the rbd image as its virtio disk and reports on its
 * serial console that it read /dev/vda.
 *
 * Without a cluster, one check still runs: the real qemu takes drover's rbd
 * argv and fails where librados reads the ceph.conf, with its message as
 * the start's one sentence.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DroverError } from '../../src/lib/errors.js';
import { QemuHypervisor } from '../../src/hypervisor/qemu/qemu-hypervisor.js';
import { ensureGuest, waitForSerial } from '../helpers/guest.js';
import { confinedOptions } from '../helpers/confined.js';

const conf = process.env.DROVER_TEST_CEPH_CONF;
const image = process.env.DROVER_TEST_CEPH_IMAGE;
const user = process.env.DROVER_TEST_CEPH_USER;
const skip = conf && image ? false : 'no Ceph cluster is configured (set DROVER_TEST_CEPH_CONF and DROVER_TEST_CEPH_IMAGE=pool/name to run it)';

describe('rbd disks on a real Ceph cluster', () => {
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });

  it('gives qemu an rbd blockdev it parses (it fails only reading the missing ceph.conf)', async () => {
    const guest = await ensureGuest();
    const dir = await mkdtemp(join(tmpdir(), 'drover-rbd-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const missing = join(dir, 'no-ceph.conf');
    const hv = new QemuHypervisor({ runRoot: join(dir, 'vms'), accel: 'tcg', ceph: { conf: missing, user: 'drover' }, ...(await confinedOptions([dir])) });
    await assert.rejects(
      hv.start({ uuid: randomUUID(), name: 'rbd-argv', spec: { vcpus: 1, memory: 96, vnc: 'none', restart: 'never', boot: { kernel: guest.kernel }, disks: [{ rbd: 'vms/web-1' }] } }),
      (e: unknown) => e instanceof DroverError && e.code === 'START_FAILED' && e.message.includes(`error reading conf file ${missing}`),
    );
  });

  it('boots the marker guest with the rbd image as /dev/vda', { skip }, async () => {
    const guest = await ensureGuest();
    const dir = await mkdtemp(join(tmpdir(), 'drover-rbd-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const hv = new QemuHypervisor({ runRoot: join(dir, 'vms'), accel: 'tcg', ceph: { conf: conf!, ...(user ? { user } : {}) }, ...(await confinedOptions([dir])) });
    const uuid = randomUUID();
    const handle = await hv.start({
      uuid,
      name: 'rbd-test',
      spec: {
        vcpus: 1,
        memory: 96,
        vnc: 'none',
        restart: 'never',
        boot: { kernel: guest.kernel, initrd: guest.initrdDiskMarker, cmdline: 'console=ttyS0 quiet' },
        disks: [{ rbd: image! }],
      },
    });
    cleanups.push(() => hv.stop(uuid, { timeoutMs: 0, force: true }));
    const serial = await waitForSerial(handle.serialLog, 'DROVER-MARK-SEEN', 60_000);
    assert.ok(!serial.includes('DROVER-MARK-NODISK'), 'the guest found its virtio disk');
  });
});
