/**
 * Which file holds each disk of a VM, for a backup or restore
 * (docs/backups.md). A `path` disk is its file. An `image` disk is the
 * overlay a start made in the agent's state dir,
 * `<state>/vms/<uuid>/disks/disk<N>.qcow2` (src/storage/prepare-disks.ts), so
 * whoever copies it (the VM's agent, or the CLI given `--state-dir`) runs on
 * the VM's host. An `rbd` disk is refused.
 *
 * A backup of an image disk is flattened (self-contained: it does not need
 * the image); a restore writes that qcow2 at the overlay's path, where the
 * agent keeps it as the disk (prepare-disks makes an overlay only where none
 * is).
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { DiskSpec } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import { imageDiskPath } from '../storage/prepare-disks.js';
import type { StoredVm } from '../store/vm-repository.js';

export interface VmDiskFile {
  index: number;
  /** The disk's file: its path, or its overlay in the state dir. */
  file: string;
  /** Set for an image disk: its `image`. */
  image?: string;
}

function vmName(vm: StoredVm): string {
  return vm.parsed.ok ? vm.parsed.value.name : vm.uuid;
}

/** The VM's disks as in its record; refuses an invalid record and one without disks. */
export function vmDisks(vm: StoredVm): DiskSpec[] {
  if (!vm.parsed.ok) throw new DroverError('INVALID_SPEC', `VM ${vm.uuid} has an invalid record: ${vm.parsed.error}`);
  const disks = vm.parsed.value.spec.disks ?? [];
  if (disks.length === 0) throw new DroverError('USAGE', `VM ${vm.parsed.value.name} has no disks to back up.`);
  return disks;
}

/**
 * Where each disk of `vm` is, for a VM whose disks live under `uuid` (the
 * VM's own, or a new VM's for a restore --as). An image disk needs
 * `stateDir`.
 */
export function vmDiskFiles(vm: StoredVm, stateDir: string | undefined, uuid = vm.uuid): VmDiskFile[] {
  return vmDisks(vm).map((d, index) => {
    if (typeof d.path === 'string') return { index, file: d.path };
    if (typeof d.image === 'string') {
      if (stateDir === undefined) {
        throw new DroverError('USAGE', `Disk ${index} of VM ${vmName(vm)} is an image disk, whose file is in the agent's state dir; give --state-dir (or DROVER_STATE_DIR) and run this on the VM's host.`);
      }
      return { index, file: imageDiskPath(join(stateDir, 'vms'), uuid, index), image: d.image };
    }
    throw new DroverError('USAGE', `Disk ${index} of VM ${vmName(vm)} is an rbd disk; back it up with Ceph's own tools (rbd export).`);
  });
}

/** Refuses an image disk whose overlay is missing (the VM never started on this host) or is not a regular file. */
export async function requireOverlays(vm: StoredVm, disks: readonly VmDiskFile[]): Promise<void> {
  for (const d of disks) {
    if (d.image === undefined) continue;
    const st = await lstat(d.file).catch(() => null);
    if (!st) {
      throw new DroverError('NOT_FOUND', `Disk ${d.index} of VM ${vmName(vm)} (image ${d.image}) has no overlay at ${d.file}: run this on the VM's host with its agent's --state-dir, after the VM has started there once.`);
    }
    if (!st.isFile()) throw new DroverError('CONFLICT', `${d.file} is not a regular file (a symlink?), so drover will not read disk ${d.index} through it.`);
  }
}
