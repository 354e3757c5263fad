/**
 * Image disks as files, with the real qemu-img: an image disk becomes a
 * qcow2 overlay in the VM's folder backed by the cached image, grown to its
 * size and kept across starts; vacuum removes only cached images no overlay
 * uses, and the agent's (DiskPreparer.vacuum) never one a start is using; and removing a VM's folder never touches anything outside it, with
 * hostile symlinks and uuids (test names say which).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { imageObjectKey, resolveImageRef, type ImageRecord } from '../../src/contract/image-record.js';
import type { VmSpec } from '../../src/contract/vm-record.js';
import { DroverError } from '../../src/lib/errors.js';
import { QemuHypervisor } from '../../src/hypervisor/qemu/qemu-hypervisor.js';
import { DirImageStore } from '../../src/storage/dir-image-store.js';
import { ImageCache } from '../../src/storage/image-cache.js';
import { vacuumImageCache } from '../../src/storage/image-vacuum.js';
import { DiskPreparer, imageDiskPath } from '../../src/storage/prepare-disks.js';
import { QemuImg } from '../../src/storage/qemu-img.js';
import { confinedOptions } from '../helpers/confined.js';

const MIB = 1024 * 1024;
const qemuImg = new QemuImg();

function isInvalidSpec(pattern: RegExp): (e: unknown) => boolean {
  return (e: unknown) => e instanceof DroverError && e.code === 'INVALID_SPEC' && !e.retryable && pattern.test(e.message);
}

describe('image disks, cache vacuum and VM folders', () => {
  let dir: string;
  let stateDir: string;
  let vmsDir: string;
  const images: ImageRecord[] = [];
  let preparer: DiskPreparer;

  async function addImage(name: string, bytes: Buffer): Promise<ImageRecord> {
    const uuid = randomUUID();
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await new DirImageStore(join(dir, 'store')).put(imageObjectKey(uuid), Readable.from([bytes]), { size: bytes.length, sha256 });
    const rec: ImageRecord = { uuid, name, version: '1', format: 'raw', size: bytes.length, virtual_size: bytes.length, sha256, source: { type: 'file', path: '/x' }, created_at: new Date().toISOString(), state: 'active' };
    images.push(rec);
    return rec;
  }

  const spec = (disks: VmSpec['disks']): VmSpec => ({ vcpus: 1, memory: 64, vnc: 'none', restart: 'always', disks });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-disks-'));
    stateDir = join(dir, 'state');
    vmsDir = join(stateDir, 'vms');
    const store = new DirImageStore(join(dir, 'store'));
    preparer = new DiskPreparer({
      vmsDir,
      cache: new ImageCache({ dir: join(stateDir, 'images'), openStore: async () => store }),
      resolveImage: async (ref) => resolveImageRef(ref, images),
      qemuImg,
    });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes an image disk a qcow2 overlay of the cached image, grown to its size; other disks pass through', async () => {
    const base = await addImage('base', Buffer.concat([Buffer.from('BASE-IMAGE'), Buffer.alloc(MIB - 10)]));
    const uuid = randomUUID();
    const out = await preparer.prepare(uuid, spec([{ image: 'base', size: 8, extra: 'kept' } as never, { path: '/srv/data.raw' }]));
    const overlay = imageDiskPath(vmsDir, uuid, 0);
    assert.deepEqual(out.disks, [{ path: overlay, format: 'qcow2', extra: 'kept' }, { path: '/srv/data.raw' }]);
    const info = await qemuImg.info(overlay);
    assert.deepEqual(info, { format: 'qcow2', virtualSize: 8 * MIB, backingFile: join(stateDir, 'images', base.sha256), backingFormat: 'raw' });
  });

  it('keeps an overlay across starts and only ever grows it', async () => {
    await addImage('keep', Buffer.alloc(MIB));
    const uuid = randomUUID();
    await preparer.prepare(uuid, spec([{ image: 'keep' }]));
    const overlay = imageDiskPath(vmsDir, uuid, 0);
    const made = await stat(overlay);
    assert.equal((await qemuImg.info(overlay)).virtualSize, MIB);
    await preparer.prepare(uuid, spec([{ image: 'keep', size: 4 }]));
    assert.equal((await stat(overlay)).ino, made.ino, 'the same file, not a new overlay');
    assert.equal((await qemuImg.info(overlay)).virtualSize, 4 * MIB);
    await preparer.prepare(uuid, spec([{ image: 'keep', size: 2 }]));
    assert.equal((await qemuImg.info(overlay)).virtualSize, 4 * MIB, 'never shrunk');
  });

  it('refuses an unknown image, a size below the image, and a disks folder that is a symlink', async () => {
    await assert.rejects(preparer.prepare(randomUUID(), spec([{ image: 'nope' }])), isInvalidSpec(/^Disk 1 uses image nope, which is not an active image of this cluster \(drover image list\)\.$/));
    await addImage('big', Buffer.alloc(3 * MIB));
    await assert.rejects(preparer.prepare(randomUUID(), spec([{ image: 'big', size: 2 }])), isInvalidSpec(/^Disk 1 asks for 2 MiB, less than the 3 MiB of image big:1\.$/));
    const uuid = randomUUID();
    const outside = join(dir, 'outside-disks');
    await mkdir(outside);
    await mkdir(join(vmsDir, uuid), { recursive: true });
    await symlink(outside, join(vmsDir, uuid, 'disks'));
    await assert.rejects(preparer.prepare(uuid, spec([{ image: 'base' }])), isInvalidSpec(/is not a real directory \(a symlink\?\)/));
    assert.deepEqual(await readdir(outside), [], 'nothing was written through the symlink');
  });

  it('vacuum removes only cached images no overlay uses (and nothing on a dry run)', async () => {
    const unused = await addImage('unused', randomBytes(4096));
    const cacheDir = join(stateDir, 'images');
    // Fetched by a VM that was since deleted: in the cache, no overlay.
    await new ImageCache({ dir: cacheDir, openStore: async () => new DirImageStore(join(dir, 'store')) }).ensure(unused);
    const dry = await vacuumImageCache({ stateDir, qemuImg, minAgeMs: 0, dryRun: true });
    assert.deepEqual(dry.removed.map((r) => r.sha256), [unused.sha256]);
    assert.ok((await readdir(cacheDir)).includes(unused.sha256));
    const young = await vacuumImageCache({ stateDir, qemuImg, minAgeMs: 60_000 });
    assert.deepEqual(young.removed, [], 'a file used within min-age stays');
    const res = await vacuumImageCache({ stateDir, qemuImg, minAgeMs: 0 });
    assert.deepEqual(res.removed.map((r) => r.sha256), [unused.sha256]);
    const left = (await readdir(cacheDir)).sort();
    const used = images.filter((i) => ['base', 'keep'].includes(i.name)).map((i) => i.sha256).sort();
    assert.deepEqual(left, used);
    assert.ok(res.kept.every((k) => k.used_by.length === 1));
  });

  it('DiskPreparer.vacuum (the agent\'s): removes an image once no VM uses it, never one a start is using, nor one a start used during its scan', async () => {
    // qemu-img, with calls held at will: createOverlay (a start between its cache lookup and its overlay) and info (vacuum's scan).
    const gates = { overlay: null as Promise<void> | null, info: null as Promise<void> | null };
    const entered = { overlay: false, info: false };
    class HeldQemuImg extends QemuImg {
      override async createOverlay(...args: Parameters<QemuImg['createOverlay']>): Promise<void> {
        entered.overlay = true;
        await gates.overlay;
        return super.createOverlay(...args);
      }
      override async info(...args: Parameters<QemuImg['info']>): ReturnType<QemuImg['info']> {
        entered.info = true;
        await gates.info;
        return super.info(...args);
      }
    }
    const own = join(dir, 'own-state');
    const store = new DirImageStore(join(dir, 'store'));
    const p = new DiskPreparer({
      vmsDir: join(own, 'vms'),
      cache: new ImageCache({ dir: join(own, 'images'), openStore: async () => store }),
      resolveImage: async (ref) => resolveImageRef(ref, images),
      qemuImg: new HeldQemuImg(),
    });
    const cached = async () => (await readdir(join(own, 'images'))).sort();
    const hold = () => {
      let open!: () => void;
      return { gate: new Promise<void>((r) => (open = r)), open: () => open() };
    };
    const until = async (flag: keyof typeof entered) => {
      while (!entered[flag]) await new Promise((r) => setTimeout(r, 5));
    };
    const one = await addImage('vac-one', randomBytes(8192));
    const two = await addImage('vac-two', randomBytes(8192));
    const vmA = randomUUID();
    const vmB = randomUUID();
    const vmC = randomUUID();

    // A and B use image one; once both are deleted, vacuum removes it.
    await p.prepare(vmA, spec([{ image: 'vac-one' }]));
    await p.prepare(vmB, spec([{ image: 'vac-one' }]));
    assert.deepEqual((await p.vacuum({ minAgeMs: 0 })).removed, [], 'used by two VMs');
    await rm(join(own, 'vms', vmA), { recursive: true });
    assert.deepEqual((await p.vacuum({ minAgeMs: 0 })).removed, [], 'still used by B');
    await rm(join(own, 'vms', vmB), { recursive: true });

    // A start of C is between its cache lookup (a hit) and its overlay: the image is kept.
    const heldOverlay = hold();
    gates.overlay = heldOverlay.gate;
    entered.overlay = false;
    const startC = p.prepare(vmC, spec([{ image: 'vac-one' }]));
    await until('overlay');
    const during = await p.vacuum({ minAgeMs: 0 });
    assert.deepEqual(during.removed, [], 'kept for the start under way');
    heldOverlay.open();
    gates.overlay = null;
    await startC;
    await qemuImg.info(imageDiskPath(join(own, 'vms'), vmC, 0)); // its backing file is there
    assert.deepEqual(await cached(), [one.sha256]);

    // A start that fetches image two and makes its overlay while vacuum is scanning (held on C's overlay): two is kept.
    const heldInfo = hold();
    gates.info = heldInfo.gate;
    entered.info = false;
    const scanning = p.vacuum({ minAgeMs: 0 });
    await until('info');
    const vmD = randomUUID();
    await p.prepare(vmD, spec([{ image: 'vac-two' }]));
    heldInfo.open();
    gates.info = null;
    assert.deepEqual((await scanning).removed, [], 'image two was used during the scan, image one is used by C');
    assert.deepEqual(await cached(), [one.sha256, two.sha256].sort());

    // C and D go: the next vacuum removes both images; a young image stays with the default min age.
    await rm(join(own, 'vms', vmC), { recursive: true });
    assert.deepEqual((await p.vacuum()).removed, [], 'the default min age (300 s) keeps images just used');
    await rm(join(own, 'vms', vmD), { recursive: true });
    const last = await p.vacuum({ minAgeMs: 0 });
    assert.deepEqual(last.removed.map((r) => r.sha256).sort(), [one.sha256, two.sha256].sort());
    assert.deepEqual(await cached(), []);
  });

  it('says in one sentence that qemu-img is missing, and the start fails for good', async () => {
    const noTool = new DiskPreparer({
      vmsDir,
      cache: new ImageCache({ dir: join(stateDir, 'images'), openStore: async () => new DirImageStore(join(dir, 'store')) }),
      resolveImage: async (ref) => resolveImageRef(ref, images),
      qemuImg: new QemuImg({ binary: join(dir, 'no-such-qemu-img') }),
    });
    await assert.rejects(noTool.prepare(randomUUID(), spec([{ image: 'base' }])), (e: unknown) =>
      e instanceof DroverError && e.code === 'SPAWN_FAILED' && !e.retryable &&
      /^qemu-img \(.*no-such-qemu-img\) is not installed or not on PATH, so drover cannot create the overlay .*disk0\.qcow2\.tmp; install qemu-utils\.$/.test(e.message),
    );
  });

  it('vacuum removes nothing when an overlay cannot be read', async () => {
    const uuid = randomUUID();
    await mkdir(join(vmsDir, uuid, 'disks'), { recursive: true });
    await writeFile(join(vmsDir, uuid, 'disks', 'disk0.qcow2'), 'not a qcow2');
    const before = (await readdir(join(stateDir, 'images'))).sort();
    await assert.rejects(vacuumImageCache({ stateDir, qemuImg, minAgeMs: 0 }), /^DroverError: Vacuum removed nothing: the overlay .*disk0\.qcow2 cannot be read/);
    assert.deepEqual((await readdir(join(stateDir, 'images'))).sort(), before);
    await rm(join(vmsDir, uuid), { recursive: true });
  });

  it('removing a VM folder (REQUESTED_DELETE) never follows symlinks or deletes a path disk outside it', async () => {
    const hv = new QemuHypervisor({ runRoot: vmsDir, accel: 'tcg', ...(await confinedOptions([dir])) });
    const outside = join(dir, 'precious');
    await mkdir(join(outside, 'sub'), { recursive: true });
    await writeFile(join(outside, 'data.raw'), 'user disk');
    await writeFile(join(outside, 'sub', 'file'), 'keep me');
    const uuid = randomUUID();
    await preparer.prepare(uuid, spec([{ image: 'base' }, { path: join(outside, 'data.raw') }]));
    const disks = join(vmsDir, uuid, 'disks');
    await symlink(outside, join(disks, 'dir-link'));
    await symlink(join(outside, 'data.raw'), join(disks, 'disk9.qcow2'));
    await symlink('../../../../precious/sub', join(disks, 'relative-link'));
    assert.equal(await readFile(join(disks, 'relative-link', 'file'), 'utf8'), 'keep me', 'the relative link reaches outside');
    await hv.destroy(uuid);
    assert.equal(await stat(join(vmsDir, uuid)).catch(() => null), null, 'the VM folder is gone');
    assert.equal(await readFile(join(outside, 'data.raw'), 'utf8'), 'user disk');
    assert.equal(await readFile(join(outside, 'sub', 'file'), 'utf8'), 'keep me');

    // A VM folder that is itself a symlink: the link goes, its target stays.
    const linked = randomUUID();
    await symlink(outside, join(vmsDir, linked));
    await hv.destroy(linked);
    assert.equal(await readFile(join(outside, 'sub', 'file'), 'utf8'), 'keep me');

    // Names that are not a uuid directly under the run root are refused.
    for (const bad of ['..', '../precious', `${uuid}/..`, '', '.', 'ABCDEF01-0000-4000-8000-000000000000']) {
      await assert.rejects(hv.destroy(bad), /Refusing to touch/, bad);
    }
    assert.deepEqual((await readdir(outside)).sort(), ['data.raw', 'sub']);
  });
});
