/**
 * Image disks become files before a start (the copy-on-write clone that ZFS
 * gives SmartOS): the agent calls `prepare` and hands the hypervisor the
 * spec it returns, in which every `image` disk is a `path` to a qcow2
 * overlay with `format: qcow2`. The hypervisor boundary only ever sees files.
 *
 *   <state>/vms/<uuid>/disks/disk<N>.qcow2   overlay of disk N (0-based),
 *                                            backed by <state>/images/<sha256>
 *
 * An overlay is made once (to a temp name, then renamed) and kept across
 * restarts: the guest's writes live in it. Whatever qcow2 is at that path is
 * kept, including the self-contained one `drover vm restore` writes there
 * from a backup (docs/backups.md): it needs neither its image nor the cache. It is grown to the disk's `size`
 * (MiB) when that is larger, never shrunk. It goes with the VM's folder on
 * REQUESTED_DELETE (QemuHypervisor.destroy), and nothing outside that folder
 * is ever written or removed: a VM folder or disks folder that is a symlink
 * is refused rather than followed.
 */
import { lstat, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ImageRecord } from '../contract/image-record.js';
import { UUID_RE, type DiskSpec, type VmSpec } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import type { ImageCache } from './image-cache.js';
import { DEFAULT_VACUUM_MIN_AGE_S, vacuumImageCache, type VacuumResult } from './image-vacuum.js';
import type { QemuImg } from './qemu-img.js';

const MIB = 1024 * 1024;

/** Where disk `index` of VM `uuid` lives when it is an image disk (for code that reads disks of a stopped VM). */
export function imageDiskPath(vmsDir: string, uuid: string, index: number): string {
  return join(vmsDir, uuid, 'disks', `disk${index}.qcow2`);
}

/** What a prepared image disk looks like to the hypervisor: the overlay, qcow2, and the disk's other fields. */
export function preparedDisk(disk: DiskSpec, overlay: string): DiskSpec {
  const rest: Record<string, unknown> = { ...disk };
  delete rest.image;
  delete rest.size;
  return { ...rest, path: overlay, format: 'qcow2' } as DiskSpec;
}

export interface DiskPreparerOptions {
  /** `<state>/vms`, the hypervisor's run root. */
  vmsDir: string;
  cache: ImageCache;
  /** The active image a disk's `image` names, or null. */
  resolveImage(ref: string): Promise<ImageRecord | null>;
  qemuImg: QemuImg;
}

/**
 * Vacuum against starts in the same process: a start pins the sha256 of
 * each image it uses, from before the cache lookup until its overlay has its
 * final name; a vacuum removes nothing pinned, nor anything pinned since it
 * began (its scan of the overlays may predate that start's overlay), and a
 * start whose image a vacuum is removing right now waits for the removal
 * and fetches the image again. Claims and pins are taken synchronously, so
 * one of the two always sees the other.
 */
export class DiskPreparer {
  private readonly pins = new Map<string, number>();
  /** sha256s pinned since the running vacuum began; null when none runs. */
  private touched: Set<string> | null = null;
  private readonly removing = new Map<string, Promise<void>>();
  private vacuuming: Promise<VacuumResult> | null = null;

  constructor(private readonly opts: DiskPreparerOptions) {}

  /**
   * Removes cached images that no overlay on this host uses and that were
   * not used for `minAgeMs` (300 s), never one a start here is using.
   * Concurrent calls share one run. Meant for the agent's periodic resync.
   */
  vacuum(opts: { minAgeMs?: number; dryRun?: boolean } = {}): Promise<VacuumResult> {
    if (this.vacuuming) return this.vacuuming;
    this.touched = new Set();
    this.vacuuming = vacuumImageCache({
      stateDir: dirname(this.opts.cache.dir),
      vmsDir: this.opts.vmsDir,
      qemuImg: this.opts.qemuImg,
      minAgeMs: opts.minAgeMs ?? DEFAULT_VACUUM_MIN_AGE_S * 1000,
      ...(opts.dryRun !== undefined ? { dryRun: opts.dryRun } : {}),
      guard: { claim: (sha256) => this.claimForRemoval(sha256) },
    }).finally(() => {
      this.vacuuming = null;
      this.touched = null;
    });
    return this.vacuuming;
  }

  private claimForRemoval(sha256: string): (() => void) | null {
    if (this.pins.has(sha256) || this.touched?.has(sha256)) return null;
    let release!: () => void;
    this.removing.set(sha256, new Promise<void>((r) => (release = r)));
    return () => {
      this.removing.delete(sha256);
      release();
    };
  }

  /** Pins `sha256` for a start (see the class comment); resolves once no removal of it is under way. */
  private async pin(sha256: string): Promise<() => void> {
    this.pins.set(sha256, (this.pins.get(sha256) ?? 0) + 1);
    this.touched?.add(sha256);
    await this.removing.get(sha256);
    return () => {
      const n = (this.pins.get(sha256) ?? 1) - 1;
      if (n > 0) this.pins.set(sha256, n);
      else this.pins.delete(sha256);
    };
  }

  /** The spec with every image disk replaced by its overlay file (made or grown as needed). */
  async prepare(uuid: string, spec: VmSpec): Promise<VmSpec> {
    const disks = spec.disks ?? [];
    if (!disks.some((d) => d.image !== undefined)) return spec;
    await ensureImageDisksDir(this.opts.vmsDir, uuid);
    const out: DiskSpec[] = [];
    for (const [i, disk] of disks.entries()) {
      if (disk.image === undefined) {
        out.push(disk);
        continue;
      }
      const overlay = imageDiskPath(this.opts.vmsDir, uuid, i);
      await this.ensureOverlay(i, disk.image, disk.size, overlay);
      out.push(preparedDisk(disk, overlay));
    }
    return { ...spec, disks: out };
  }

  private async ensureOverlay(i: number, ref: string, sizeMiB: number | undefined, overlay: string): Promise<void> {
    const st = await lstat(overlay).catch(() => null);
    if (st && !st.isFile()) {
      throw new DroverError('INVALID_SPEC', `Disk ${i + 1}'s overlay ${overlay} is not a regular file (a symlink?), so drover will not use it.`, false);
    }
    const want = sizeMiB !== undefined ? sizeMiB * MIB : undefined;
    if (st) {
      // Made by an earlier start: the guest's data. Only grow it.
      if (want !== undefined) {
        const info = await this.opts.qemuImg.info(overlay, { shared: true, format: 'qcow2' });
        if (want > info.virtualSize) await this.opts.qemuImg.resize(overlay, 'qcow2', want);
      }
      return;
    }
    const image = await this.opts.resolveImage(ref);
    if (!image) {
      throw new DroverError('INVALID_SPEC', `Disk ${i + 1} uses image ${ref}, which is not an active image of this cluster (drover image list).`, false);
    }
    if (want !== undefined && want < image.virtual_size) {
      throw new DroverError(
        'INVALID_SPEC',
        `Disk ${i + 1} asks for ${sizeMiB} MiB, less than the ${Math.ceil(image.virtual_size / MIB)} MiB of image ${image.name}:${image.version}.`,
        false,
      );
    }
    const unpin = await this.pin(image.sha256);
    try {
      const backing = await this.opts.cache.ensure(image);
      const tmp = join(overlay, '..', `.disk${i}.qcow2.tmp`);
      await rm(tmp, { force: true });
      try {
        await this.opts.qemuImg.createOverlay(tmp, backing, image.format, Math.max(want ?? 0, image.virtual_size));
        await rename(tmp, overlay);
      } finally {
        await rm(tmp, { force: true });
      }
    } finally {
      unpin();
    }
  }
}

/**
 * Makes `<vmsDir>/<uuid>/disks` (0700) unless it exists, and returns it. A
 * uuid that is not one, or a VM or disks folder that is a symlink, is
 * refused rather than followed.
 */
export async function ensureImageDisksDir(vmsDir: string, uuid: string): Promise<string> {
  if (!UUID_RE.test(uuid)) throw new DroverError('USAGE', `Refusing to prepare disks for ${JSON.stringify(uuid)}: not a lower-case UUID.`);
  const vmDir = join(vmsDir, uuid);
  const disksDir = join(vmDir, 'disks');
  await mkdir(vmsDir, { recursive: true, mode: 0o700 });
  await realDir(vmDir, 0o700);
  await realDir(disksDir, 0o700);
  return disksDir;
}

/** Makes `dir` (mode) unless it exists; refuses one that is a symlink or not a directory. */
async function realDir(dir: string, mode: number): Promise<void> {
  const st = await lstat(dir).catch(() => null);
  if (!st) {
    await mkdir(dir, { mode });
    return;
  }
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw new DroverError('INVALID_SPEC', `${dir} is not a real directory (a symlink?), so drover will not put disks there.`, false);
  }
}
