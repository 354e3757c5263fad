/**
 * `drover image vacuum`: removes from a host's image cache every image no
 * VM on the host uses any more (imgadm vacuum). "Uses" is read from the
 * disks themselves: each overlay under `<state>/vms/<uuid>/disks/` names its
 * backing file, so an image stays exactly as long as some VM folder holds an
 * overlay of it, whatever etcd says. Files used within `minAgeMs` stay too
 * (a start may have just fetched one and not yet made its overlay), and so
 * do leftover partial downloads that young.
 *
 * If any overlay cannot be read, nothing is removed: better a full cache
 * than a VM whose backing file is gone.
 *
 * Two callers: `drover image vacuum` (another process than the agent: the
 * min age is what protects a start under way) and the agent itself
 * (DiskPreparer.vacuum, which also passes a `guard` so an image a start in
 * the agent is using is never removed, whatever its age).
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { UUID_RE } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import { ImageCache, type CachedImage } from './image-cache.js';
import type { QemuImg } from './qemu-img.js';

/** The default `min-age`: a start may have just fetched an image and not yet made its overlay. */
export const DEFAULT_VACUUM_MIN_AGE_S = 300;

/** Lets a caller veto removals of images it is using, checked right before each removal. */
export interface VacuumGuard {
  /** null: keep this sha256's files; otherwise a release to call once they are removed. */
  claim(sha256: string): (() => void) | null;
}

export interface VacuumOptions {
  /** The agent's state dir: `<state>/images` and `<state>/vms`. */
  stateDir: string;
  /** The VMs' folders when not `<state>/vms`. */
  vmsDir?: string;
  qemuImg: QemuImg;
  guard?: VacuumGuard;
  /** Keep files used more recently than this (ms). */
  minAgeMs: number;
  dryRun?: boolean;
  now?: Date;
}

export interface VacuumResult {
  removed: CachedImage[];
  kept: Array<CachedImage & { used_by: string[] }>;
  /** Partial downloads removed. */
  partials: number;
}

export async function vacuumImageCache(opts: VacuumOptions): Promise<VacuumResult> {
  const cacheDir = join(opts.stateDir, 'images');
  const cache = new ImageCache({ dir: cacheDir, openStore: () => Promise.reject(new Error('vacuum never downloads')) });
  const result: VacuumResult = { removed: [], kept: [], partials: 0 };
  const names = await readdir(cacheDir).catch(() => [] as string[]);
  if (names.length === 0) return result; // nothing cached: no overlay needs reading
  const usedBy = await backingUsers(opts.vmsDir ?? join(opts.stateDir, 'vms'), cacheDir, opts.qemuImg);
  const now = (opts.now ?? new Date()).getTime();
  /** Removes `path` unless the guard vetoes it (checked right before, so a start that began meanwhile wins). */
  const remove = async (sha256: string, path: string): Promise<boolean> => {
    if (opts.dryRun === true) return true;
    const release = opts.guard ? opts.guard.claim(sha256) : () => undefined;
    if (release === null) return false;
    try {
      await rm(path, { force: true });
    } finally {
      release();
    }
    return true;
  };
  for (const img of await cache.list()) {
    const users = usedBy.get(img.sha256) ?? [];
    if (users.length > 0 || now - img.mtime.getTime() < opts.minAgeMs || !(await remove(img.sha256, img.path))) {
      result.kept.push({ ...img, used_by: users });
      continue;
    }
    result.removed.push(img);
  }
  for (const name of names) {
    const partial = /^\.([0-9a-f]{64})\.[0-9a-f]+\.part$/.exec(name);
    if (partial?.[1] === undefined) continue;
    const st = await lstat(join(cacheDir, name)).catch(() => null);
    if (!st?.isFile() || now - st.mtime.getTime() < opts.minAgeMs) continue;
    if (await remove(partial[1], join(cacheDir, name))) result.partials++;
  }
  return result;
}

/** sha256 of each cached image -> the VMs (uuids) whose overlays it backs. */
async function backingUsers(vmsDir: string, cacheDir: string, qemuImg: QemuImg): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  const vms = (await readdir(vmsDir).catch(() => [] as string[])).filter((n) => UUID_RE.test(n));
  for (const uuid of vms) {
    const disksDir = join(vmsDir, uuid, 'disks');
    const names = await readdir(disksDir).catch(() => [] as string[]);
    for (const name of names.filter((n) => /^disk\d+\.qcow2$/.test(n))) {
      const path = join(disksDir, name);
      let backing: string | undefined;
      try {
        backing = (await qemuImg.info(path, { shared: true, format: 'qcow2' })).backingFile;
      } catch (err) {
        throw new DroverError('IMAGE_ERROR', `Vacuum removed nothing: the overlay ${path} cannot be read (${(err as Error).message.replace(/\.$/, '')}).`);
      }
      if (backing === undefined) continue;
      const abs = resolve(dirname(path), backing);
      if (dirname(abs) !== resolve(cacheDir)) continue;
      const sha = abs.slice(dirname(abs).length + 1);
      users.set(sha, [...(users.get(sha) ?? []), uuid]);
    }
  }
  return users;
}
