/**
 * The disk files a snapshot works on (docs/snapshots.md): a `path` disk is
 * its file; an image disk is the overlay a start made for it
 * (src/storage/prepare-disks.ts, `<state>/vms/<uuid>/disks/disk<N>.qcow2`).
 * Nothing is made here: a VM never started on this host has no overlay, and
 * its snapshot request fails saying so. Like prepare-disks, a symlink on the
 * way is refused rather than followed, so a rollback never rewrites a file
 * outside the VM's folder.
 */
import { lstat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { VmSpec } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import { imageDiskPath, preparedDisk } from '../storage/prepare-disks.js';

export async function snapshotDiskSpec(vmsDir: string, uuid: string, spec: VmSpec): Promise<VmSpec> {
  const disks = spec.disks ?? [];
  if (!disks.some((d) => d.image !== undefined)) return spec;
  const out = [];
  for (const [i, disk] of disks.entries()) {
    if (disk.image === undefined) {
      out.push(disk);
      continue;
    }
    const overlay = imageDiskPath(vmsDir, uuid, i);
    for (const [path, kind] of [[dirname(dirname(overlay)), 'directory'], [dirname(overlay), 'directory'], [overlay, 'file']] as const) {
      const st = await lstat(path).catch(() => null);
      if (!st) {
        throw new DroverError('SNAPSHOT_FAILED', `Disk ${i + 1} (image ${disk.image}) has no overlay on this host yet: its overlay is made when the VM first starts here.`, false);
      }
      if (st.isSymbolicLink() || (kind === 'file' ? !st.isFile() : !st.isDirectory())) {
        throw new DroverError('SNAPSHOT_FAILED', `${path} is not a real ${kind} (a symlink?), so drover will not snapshot disk ${i + 1} through it.`, false);
      }
    }
    out.push(preparedDisk(disk, overlay));
  }
  return { ...spec, disks: out };
}
