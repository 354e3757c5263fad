/** snapshotDiskSpec: image disks as their overlays, over a temp state dir (no symlink followed, nothing made). */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotDiskSpec } from '../../src/agent/snapshot-disks.js';
import type { VmSpec } from '../../src/contract/vm-record.js';
import { DroverError } from '../../src/lib/errors.js';

const UUID = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
const spec = (disks: VmSpec['disks']): VmSpec => ({ vcpus: 1, memory: 64, vnc: 'unix', restart: 'always', disks });

describe('snapshotDiskSpec', () => {
  let vms: string;
  before(async () => {
    vms = join(await mkdtemp(join(tmpdir(), 'drover-snapdisks-')), 'vms');
    await mkdir(vms);
  });
  after(async () => rm(join(vms, '..'), { recursive: true, force: true }));

  it('leaves a spec without image disks as it is', async () => {
    const s = spec([{ path: '/srv/a.qcow2' }]);
    assert.equal(await snapshotDiskSpec(vms, UUID, s), s);
  });

  it('names the overlay of each image disk, qcow2, keeping path disks', async () => {
    await mkdir(join(vms, UUID, 'disks'), { recursive: true });
    await writeFile(join(vms, UUID, 'disks', 'disk1.qcow2'), 'x');
    const out = await snapshotDiskSpec(vms, UUID, spec([{ path: '/srv/a.qcow2' }, { image: 'debian-12', size: 4096 }]));
    assert.deepEqual(out.disks, [{ path: '/srv/a.qcow2' }, { path: join(vms, UUID, 'disks', 'disk1.qcow2'), format: 'qcow2' }]);
  });

  it('refuses an image disk whose overlay was never made, making nothing', async () => {
    const other = '3c1d5a8f-4b62-4c9f-8b1f-7a2e3d4c5b6a';
    await assert.rejects(
      snapshotDiskSpec(vms, other, spec([{ image: 'debian-12' }])),
      (e: unknown) => e instanceof DroverError && e.code === 'SNAPSHOT_FAILED' && e.message === 'Disk 1 (image debian-12) has no overlay on this host yet: its overlay is made when the VM first starts here.',
    );
    assert.equal((await readdir(vms)).includes(other), false);
  });

  it('refuses a symlinked overlay or disks folder rather than follow it', async () => {
    const outside = join(vms, '..', 'outside.qcow2');
    await writeFile(outside, 'x');
    const a = '4d2e6b9a-5c73-4d0a-9c2a-8b3f4e5d6c7b';
    await mkdir(join(vms, a, 'disks'), { recursive: true });
    await symlink(outside, join(vms, a, 'disks', 'disk0.qcow2'));
    await assert.rejects(snapshotDiskSpec(vms, a, spec([{ image: 'x' }])), /disk0\.qcow2 is not a real file \(a symlink\?\)/);
    const b = '5e3f7c0b-6d84-4e1b-8d3b-9c4a5f6e7d8c';
    await mkdir(join(vms, b));
    await mkdir(join(vms, '..', 'elsewhere'));
    await writeFile(join(vms, '..', 'elsewhere', 'disk0.qcow2'), 'x');
    await symlink(join(vms, '..', 'elsewhere'), join(vms, b, 'disks'));
    await assert.rejects(snapshotDiskSpec(vms, b, spec([{ image: 'x' }])), /disks is not a real directory \(a symlink\?\)/);
  });
});
