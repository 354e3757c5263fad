/**
 * A backup of a VM's disks, and a restore over them (docs/backups.md): what
 * `drover vm backup|restore` run on the VM's host and what the agent runs
 * for a backup asked through the API (src/agent/backup-runner.ts).
 *
 * A stopped VM's path disks are read as they are, its image disks (and a
 * qcow2 on a backing file) flattened into a temporary self-contained qcow2
 * first. A running VM's qcow2 disks are read at a temporary snapshot its
 * agent takes of all of them at once (`snapshot_request`, one QMP
 * transaction): copied with `qemu-img convert -U -l snapshot.name=...`
 * (which flattens an overlay too), uploaded, then the copies and the
 * snapshot are deleted.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AT_REST_STATUSES } from '../contract/status.js';
import { DroverError } from '../lib/errors.js';
import { createBackup, restoreBackup, type BackupDiskInput, type BackupManifest, type BackupTarget } from '../storage/backup.js';
import { ensureImageDisksDir } from '../storage/prepare-disks.js';
import { QemuImg } from '../storage/qemu-img.js';
import type { StoredVm } from '../store/vm-repository.js';
import { requireOverlays, type VmDiskFile } from './backup-disks.js';
import { requestSnapshot } from './snapshot-vm.js';
import type { VmStore } from './vm-store.js';


/** Seconds a backup waits for each of its temporary snapshot's requests. */
export const BACKUP_SNAPSHOT_WAIT_SECONDS = 300;

const vmName = (vm: StoredVm): string => (vm.parsed.ok ? vm.parsed.value.name : vm.uuid);

export function requireAtRest(vm: StoredVm, why: string): void {
  const status = vm.parsed.ok ? (vm.parsed.value.status ?? '') : '';
  if (!AT_REST_STATUSES.has(status)) throw new DroverError('CONFLICT', `VM ${vmName(vm)} is ${status || 'without a status'}; stop it first (${why}).`);
}

export interface VmBackupOptions {
  /** For a running VM's snapshot requests. */
  store: VmStore;
  target: BackupTarget;
  /** The backup's name (default: its id). */
  name?: string;
  onProgress(line: string): void;
  /** Told the temporary snapshot's name before it is asked for (the agent notes it in the request). */
  onSnapshot?(name: string): Promise<void>;
}

/** Backs up every disk of `vm` (RUNNING, or at rest) to `opts.target`. */
export async function backupVm(vm: StoredVm, disks: readonly VmDiskFile[], opts: VmBackupOptions): Promise<BackupManifest> {
  const running = vm.parsed.ok && vm.parsed.value.status === 'RUNNING';
  if (!running) requireAtRest(vm, 'a backup reads the disks of a stopped VM, or of a RUNNING one at a snapshot');
  await requireOverlays(vm, disks);
  const who = { uuid: vm.uuid, name: vmName(vm) };
  if (!running) return backupStopped(who, disks, opts);
  await requireQcow2(who.name, disks.map((d) => d.file));
  return backupRunning(who, disks, opts);
}

/** A running VM is backed up from a snapshot, which only qcow2 disks hold. */
async function requireQcow2(name: string, paths: readonly string[]): Promise<void> {
  const qemuImg = new QemuImg();
  for (const [i, path] of paths.entries()) {
    const { format } = await qemuImg.info(path, { shared: true });
    if (format !== 'qcow2') {
      throw new DroverError('CONFLICT', `VM ${name} is RUNNING; stop it first (disk ${i} (${path}) is ${format}, and a running VM is backed up from a snapshot, which only qcow2 disks can hold).`);
    }
  }
}

/** A copy of each disk made by `copy` into a temporary folder, removed afterwards; what createBackup uploads. */
async function withCopies<T>(disks: readonly VmDiskFile[], copy: (d: VmDiskFile, dest: string) => Promise<boolean>, use: (inputs: BackupDiskInput[]) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-backup-'));
  try {
    const inputs: BackupDiskInput[] = [];
    for (const d of disks) {
      const dest = join(dir, `disk-${d.index}`);
      const copied = await copy(d, dest);
      inputs.push({ file: copied ? dest : d.file, source: d.file, ...(d.image !== undefined ? { image: d.image } : {}) });
    }
    return await use(inputs);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A qemu-img that may copy a whole disk. */
const longQemuImg = (): QemuImg => new QemuImg({ timeoutMs: 24 * 3600_000 });

/**
 * A stopped VM: path disks are uploaded as they are, unless one is a qcow2
 * that names a backing file (or an external data file); those and image
 * disks are flattened first (qemu-img convert reads through the backing
 * chain), so a backup never needs another file to exist when restored.
 */
async function backupStopped(vm: { uuid: string; name: string }, disks: readonly VmDiskFile[], opts: VmBackupOptions): Promise<BackupManifest> {
  const qemuImg = longQemuImg();
  return withCopies(
    disks,
    async (d, dest) => {
      if (d.image === undefined) {
        const info = await qemuImg.info(d.file, { shared: true });
        if (info.format !== 'qcow2' || (info.backingFile === undefined && info.dataFile === undefined)) return false;
        opts.onProgress(`VM ${vm.name}: flattening disk ${d.index} (a qcow2 on ${info.backingFile ?? info.dataFile})`);
      } else {
        opts.onProgress(`VM ${vm.name}: flattening disk ${d.index} (image ${d.image})`);
      }
      await qemuImg.flatten(d.file, dest);
      return true;
    },
    (inputs) => createBackup(opts.target, vm, inputs, opts.name),
  );
}

/**
 * The disks of a running VM at one point in time: each disk is copied at
 * the agent's snapshot into a temporary file (flattened: an image disk's
 * copy holds its image's data), the copies are uploaded, then the copies and
 * the snapshot are deleted (a snapshot left behind is reported, and never
 * fails a backup that is complete).
 */
async function backupRunning(vm: { uuid: string; name: string }, disks: readonly VmDiskFile[], opts: VmBackupOptions): Promise<BackupManifest> {
  const snapshot = `drover-backup-${randomBytes(6).toString('hex')}`;
  const snap = (op: 'create' | 'delete') => requestSnapshot(opts.store, { op, ref: vm.uuid, name: snapshot, waitSeconds: BACKUP_SNAPSHOT_WAIT_SECONDS, onProgress: opts.onProgress });
  await opts.onSnapshot?.(snapshot);
  await snap('create');
  try {
    const qemuImg = longQemuImg();
    return await withCopies(
      disks,
      async (d, dest) => {
        opts.onProgress(`VM ${vm.name}: copying disk ${d.index} at snapshot ${snapshot}`);
        await qemuImg.convertSnapshot(d.file, snapshot, dest);
        return true;
      },
      (inputs) => createBackup(opts.target, vm, inputs, opts.name),
    );
  } finally {
    await snap('delete').catch((err: unknown) => {
      opts.onProgress(`VM ${vm.name}: the temporary snapshot ${snapshot} was not deleted (${err instanceof Error ? err.message : String(err)}); delete it with \`drover vm snapshot delete ${vm.name} ${snapshot}\`.`);
    });
  }
}

/** Refuses to write a disk through a symlink or over something that is not a file. */
async function requireRegularFiles(disks: readonly VmDiskFile[]): Promise<void> {
  for (const d of disks) {
    if (d.image === undefined) continue; // a path disk may be a block device, the user's choice
    const st = await lstat(d.file).catch(() => null);
    if (st && !st.isFile()) throw new DroverError('CONFLICT', `${d.file} is not a regular file (a symlink?), so drover will not restore disk ${d.index} through it.`);
  }
}

/**
 * Restores `manifest` over the disks of the stopped VM `vm` (image disks at
 * their overlay paths under `stateDir`); returns the files written.
 */
export async function restoreVmDisks(vm: StoredVm, disks: readonly VmDiskFile[], manifest: BackupManifest, target: BackupTarget, stateDir: string | undefined, hint?: string): Promise<string[]> {
  requireAtRest(vm, `a restore overwrites the disks of a stopped VM only${hint !== undefined ? `; ${hint}` : ''}`);
  if (disks.some((d) => d.image !== undefined)) await ensureImageDisksDir(join(stateDir!, 'vms'), vm.uuid);
  await requireRegularFiles(disks);
  const paths = disks.map((d) => d.file);
  await restoreBackup(target, manifest, paths, true);
  return paths;
}
