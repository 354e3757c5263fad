/**
 * Internal qcow2 snapshots of a VM's disks for QemuHypervisor
 * (docs/snapshots.md): over QMP while qemu runs the VM, with qemu-img when
 * it does not.
 *
 * While it runs, qemu owns the files (and their locks), so every change goes
 * through it: `transaction` of `blockdev-snapshot-internal-sync` actions,
 * one per disk, takes every disk at the same point in time (qemu drains the
 * guest's I/O first, and the transaction is all or nothing);
 * `blockdev-snapshot-delete-internal-sync` deletes. Node names are
 * `disk<N>`, as build-qemu-args.ts names them. A rollback needs the VM
 * stopped: qemu cannot revert a disk under a running guest.
 *
 * Every operation is idempotent (create where missing, delete where
 * present), so an agent that restarts half-way simply runs it again.
 */
import type { DiskSnapshot, DiskSnapshots } from '../../contract/snapshot.js';
import { rawDiskProblem, snapshotsNewerThan } from '../../contract/snapshot.js';
import type { VmSpec } from '../../contract/vm-record.js';
import { DroverError, oneSentence } from '../../lib/errors.js';
import { detectDiskFormat } from './check-spec-files.js';
import { applyFileSnapshot, createFileSnapshot, deleteFileSnapshot, listFileSnapshots, toDiskSnapshots } from './qemu-img-snapshots.js';
import type { QmpClient } from './qmp-client.js';

/** How the disks are reached: the running qemu's QMP, or the files (the VM is not running). */
export type SnapshotAccess = { kind: 'qmp'; client: QmpClient } | { kind: 'files'; qemuImg: string };

interface DiskFile {
  index: number;
  path: string;
  /** The spec's format, else detected from the file's first bytes (as a start does). */
  format: 'raw' | 'qcow2';
}

const failed = (message: string, retryable = false, cause?: unknown): DroverError =>
  new DroverError('SNAPSHOT_FAILED', oneSentence(message), retryable, cause === undefined ? undefined : { cause });

/** The files of a spec's disks. Image disks must be prepared as files (overlays) first; RBD images are not files. */
async function diskFiles(spec: VmSpec): Promise<DiskFile[]> {
  const disks = spec.disks ?? [];
  if (disks.length === 0) throw failed('The VM has no disks to snapshot.');
  const out: DiskFile[] = [];
  for (const [index, disk] of disks.entries()) {
    const rbd = (disk as { rbd?: unknown }).rbd;
    if (typeof rbd === 'string') throw failed(`Disk ${index + 1} is the RBD image ${rbd}; drover snapshots qcow2 files only.`);
    if (disk.path === undefined) throw failed(`Disk ${index + 1} uses image ${disk.image ?? '?'}, whose overlay file is not known here.`);
    let format = disk.format;
    if (format === undefined) {
      try {
        format = await detectDiskFormat(disk.path);
      } catch (err) {
        throw failed(`The disk ${index + 1} file ${disk.path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`, false, err);
      }
    }
    out.push({ index, path: disk.path, format });
  }
  return out;
}

export async function listSnapshots(spec: VmSpec, access: SnapshotAccess): Promise<DiskSnapshots[]> {
  const files = await diskFiles(spec);
  if (access.kind === 'qmp') return listOverQmp(files, access.client);
  return Promise.all(
    files.map(async (f) => ({ ...f, snapshots: f.format === 'qcow2' ? await listFileSnapshots(f.path, access.qemuImg) : [] })),
  );
}

export async function createSnapshot(spec: VmSpec, name: string, access: SnapshotAccess): Promise<void> {
  const disks = await listSnapshots(spec, access);
  assertAllQcow2(disks);
  const missing = disks.filter((d) => !holds(d, name));
  if (missing.length === 0) return;
  if (access.kind === 'qmp') {
    const actions = missing.map((d) => ({ type: 'blockdev-snapshot-internal-sync' as const, data: { device: `disk${d.index}`, name } }));
    await qmp(() => access.client.execute('transaction', { actions }), 'take the snapshot');
    return;
  }
  for (const d of missing) await createFileSnapshot(d.path, name, access.qemuImg);
}

export async function deleteSnapshot(spec: VmSpec, name: string, access: SnapshotAccess): Promise<void> {
  const disks = await listSnapshots(spec, access);
  for (const d of disks.filter((x) => holds(x, name))) {
    if (access.kind === 'qmp') {
      await qmp(() => access.client.execute('blockdev-snapshot-delete-internal-sync', { device: `disk${d.index}`, name }), `delete the snapshot of disk ${d.index + 1}`);
    } else {
      await deleteFileSnapshot(d.path, name, access.qemuImg);
    }
  }
}

/** Reverts every disk (files only: the VM must not run) and deletes the newer snapshots; their names, oldest first. */
export async function rollbackSnapshot(spec: VmSpec, name: string, qemuImg: string): Promise<string[]> {
  const access: SnapshotAccess = { kind: 'files', qemuImg };
  const disks = await listSnapshots(spec, access);
  assertAllQcow2(disks);
  const lacking = disks.find((d) => !holds(d, name));
  if (lacking) throw failed(`Disk ${lacking.index + 1} (${lacking.path}) has no snapshot named ${name}.`);
  const newer = new Map<string, number>();
  for (const d of disks) await applyFileSnapshot(d.path, name, qemuImg);
  for (const d of disks) {
    for (const s of snapshotsNewerThan(d, name)) {
      await deleteFileSnapshot(d.path, s.name, qemuImg);
      newer.set(s.name, Math.min(newer.get(s.name) ?? Infinity, s.createdMs));
    }
  }
  return [...newer.entries()].sort((a, b) => a[1] - b[1]).map(([n]) => n);
}

function holds(d: DiskSnapshots, name: string): boolean {
  return d.snapshots.some((s) => s.name === name);
}

function assertAllQcow2(disks: readonly DiskSnapshots[]): void {
  const raw = disks.find((d) => d.format !== 'qcow2');
  if (raw) throw failed(rawDiskProblem(raw.index, raw.path));
}

/** What the running qemu says each disk node holds (`query-block`). */
async function listOverQmp(files: readonly DiskFile[], client: QmpClient): Promise<DiskSnapshots[]> {
  const blocks = await qmp(() => client.execute('query-block'), 'list the disks');
  return files.map((f) => {
    const inserted = blocks.find((b) => b.inserted?.['node-name'] === `disk${f.index}`)?.inserted;
    if (!inserted) throw failed(`qemu has no disk node disk${f.index} for disk ${f.index + 1} (${f.path}).`);
    const format = inserted.drv === 'qcow2' ? 'qcow2' : 'raw';
    const snapshots: DiskSnapshot[] = format === 'qcow2' ? toDiskSnapshots(inserted.image?.snapshots ?? []) : [];
    return { index: f.index, path: f.path, format, snapshots };
  });
}

/** Runs a QMP command; qemu's refusal becomes a terminal SNAPSHOT_FAILED with its words, a lost connection a retryable one. */
async function qmp<T>(run: () => Promise<T>, what: string): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const retryable = err instanceof DroverError && err.code === 'QMP_CLOSED';
    throw failed(`qemu could not ${what}: ${(err as Error).message}`, retryable, err);
  }
}
