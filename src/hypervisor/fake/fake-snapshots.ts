/**
 * The fake's disk snapshots, in memory per disk path (FakeWorld.disks), with
 * the rules and sentences of qemu's (src/hypervisor/qemu/qemu-snapshots.ts);
 * the contract suite holds both to them.
 */
import { rawDiskProblem, snapshotsNewerThan, type DiskSnapshots } from '../../contract/snapshot.js';
import type { VmSpec } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import type { FakeWorld } from './fake-world.js';

const failed = (message: string): DroverError => new DroverError('SNAPSHOT_FAILED', message, false);

export function fakeListSnapshots(world: FakeWorld, spec: VmSpec): DiskSnapshots[] {
  const disks = spec.disks ?? [];
  if (disks.length === 0) throw failed('The VM has no disks to snapshot.');
  return disks.map((disk, index) => {
    const rbd = (disk as { rbd?: unknown }).rbd;
    if (typeof rbd === 'string') throw failed(`Disk ${index + 1} is the RBD image ${rbd}; drover snapshots qcow2 files only.`);
    if (disk.path === undefined) throw failed(`Disk ${index + 1} uses image ${disk.image ?? '?'}, whose overlay file is not known here.`);
    if (!world.fileExists(disk.path)) throw failed(`The disk ${index + 1} file ${disk.path} cannot be read (ENOENT).`);
    const format = disk.format ?? world.diskFormat(disk.path);
    return { index, path: disk.path, format, snapshots: format === 'qcow2' ? [...world.diskSnapshots(disk.path)] : [] };
  });
}

export function fakeCreateSnapshot(world: FakeWorld, spec: VmSpec, name: string): void {
  const disks = fakeListSnapshots(world, spec);
  assertAllQcow2(disks);
  const at = world.now();
  for (const d of disks) {
    const list = world.diskSnapshots(d.path);
    if (!list.some((s) => s.name === name)) list.push({ name, id: String(world.nextSnapshotId(d.path)), createdMs: at });
  }
}

export function fakeDeleteSnapshot(world: FakeWorld, spec: VmSpec, name: string): void {
  for (const d of fakeListSnapshots(world, spec)) {
    const list = world.diskSnapshots(d.path);
    const i = list.findIndex((s) => s.name === name);
    if (i >= 0) list.splice(i, 1);
  }
}

export function fakeRollbackSnapshot(world: FakeWorld, spec: VmSpec, name: string): string[] {
  const disks = fakeListSnapshots(world, spec);
  assertAllQcow2(disks);
  const lacking = disks.find((d) => !d.snapshots.some((s) => s.name === name));
  if (lacking) throw failed(`Disk ${lacking.index + 1} (${lacking.path}) has no snapshot named ${name}.`);
  const deleted = new Set<string>();
  for (const d of disks) {
    const newer = new Set(snapshotsNewerThan(d, name).map((s) => s.name));
    const list = world.diskSnapshots(d.path);
    for (let i = list.length - 1; i >= 0; i--) if (newer.has(list[i]!.name)) list.splice(i, 1);
    for (const n of newer) deleted.add(n);
    world.rollbacks.push({ path: d.path, name });
  }
  return [...deleted];
}

function assertAllQcow2(disks: readonly DiskSnapshots[]): void {
  const raw = disks.find((d) => d.format !== 'qcow2');
  if (raw) throw failed(rawDiskProblem(raw.index, raw.path));
}
