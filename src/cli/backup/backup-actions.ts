/**
 * What `drover vm backup|restore` and `drover backup list|delete` do;
 * loaded on demand (docs/backups.md). The CLI runs the transfer itself, on
 * the host that holds the disks: `path` disks are their files, `image`
 * disks their overlays in the agent's state dir (backup-disks.ts). A
 * stopped VM's path disks are read as they are, its image disks flattened
 * into a temporary self-contained qcow2 first. A running VM's qcow2 disks
 * are read at a temporary snapshot the agent takes of all of them at once
 * (`snapshot_request`, one QMP transaction): copied with
 * `qemu-img convert -U -l snapshot.name=...` (which flattens an overlay
 * too), uploaded, then the copies and the snapshot are deleted.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { lstat, mkdir, mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { DroverError } from '../../lib/errors.js';
import { cleanIncompleteBackups, createBackup, deleteBackup, findBackup, listBackups, restoreBackup, type BackupDiskInput, type BackupManifest, type BackupTarget } from '../../storage/backup.js';
import { ensureImageDisksDir } from '../../storage/prepare-disks.js';
import { QemuImg } from '../../storage/qemu-img.js';
import { createS3Client } from '../../storage/s3/client.js';
import { VmRepository, rawObject, type StoredVm } from '../../store/vm-repository.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { DEFAULT_SNAPSHOT_WAIT_SECONDS } from '../vm/snapshot-wait.js';
import { printJson, printLine, printProgress } from '../output/print.js';
import { ProgressBar, formatBytes } from '../output/progress.js';
import { formatTable } from '../output/table.js';
import { withStore } from '../store-session.js';
import { resolveVm } from '../../vm-ops/resolve-vm.js';
import { requestSnapshot } from '../../vm-ops/snapshot-vm.js';
import { requireOverlays, stateDirOption, vmDiskFiles, vmDisks, type VmDiskFile } from './backup-disks.js';
import { resolveS3Settings, resolveTransferSettings, type S3Flags } from './s3-options.js';

export type BackupFlags = GlobalFlags & S3Flags & { name?: string; stateDir?: string };
export type RestoreFlags = GlobalFlags & S3Flags & { as?: string; dir?: string; stateDir?: string };
export type ListFlags = GlobalFlags & S3Flags;
export type CleanFlags = ListFlags & { olderThan: string };

/** Statuses in which no qemu has the disks open. */
const AT_REST = new Set(['STOP', 'KILLED', 'ERROR']);

function openTarget(ctx: CliContext, flags: S3Flags): BackupTarget & { close(): void } {
  const settings = resolveS3Settings(flags, ctx.env);
  const client = createS3Client(settings);
  let bar: ProgressBar | undefined;
  let label = '';
  return {
    client,
    bucket: settings.bucket,
    transfer: resolveTransferSettings(ctx.env),
    onProgress: (what, done, total) => {
      if (what !== label) {
        bar?.done();
        label = what;
        bar = new ProgressBar({ label: what, total, stream: ctx.io.stderr });
      }
      bar?.update(done);
    },
    close: () => {
      bar?.done();
      client.destroy();
    },
  };
}

function requireAtRest(vm: StoredVm, why: string): void {
  const status = vm.parsed.ok ? (vm.parsed.value.status ?? '') : '';
  if (!AT_REST.has(status)) {
    throw new DroverError('CONFLICT', `VM ${vm.parsed.ok ? vm.parsed.value.name : vm.uuid} is ${status || 'without a status'}; stop it first (${why}).`);
  }
}

export async function vmBackupAction(ctx: CliContext, ref: string, flags: BackupFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env);
  const vm = await withStore(opts, (s) => resolveVm(new VmRepository(s.kv, s.keys), ref));
  const running = vm.parsed.ok && vm.parsed.value.status === 'RUNNING';
  if (!running) requireAtRest(vm, 'a backup reads the disks of a stopped VM, or of a RUNNING one at a snapshot');
  const disks = vmDiskFiles(vm, stateDirOption(flags.stateDir, ctx.env));
  await requireOverlays(vm, disks);
  const name = vm.parsed.ok ? vm.parsed.value.name : vm.uuid;
  if (running) await requireQcow2(name, disks.map((d) => d.file));
  const target = openTarget(ctx, flags);
  try {
    const m = running
      ? await backupRunning(ctx, opts, { uuid: vm.uuid, name }, disks, target, flags.name)
      : await backupStopped(ctx, { uuid: vm.uuid, name }, disks, target, flags.name);
    target.close();
    if (opts.json) printJson(ctx.io, m);
    else printLine(ctx.io, m.id);
  } finally {
    target.close();
  }
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
async function backupStopped(ctx: CliContext, vm: { uuid: string; name: string }, disks: readonly VmDiskFile[], target: BackupTarget, backupName: string | undefined): Promise<BackupManifest> {
  const qemuImg = longQemuImg();
  return withCopies(
    disks,
    async (d, dest) => {
      if (d.image === undefined) {
        const info = await qemuImg.info(d.file, { shared: true });
        if (info.format !== 'qcow2' || (info.backingFile === undefined && info.dataFile === undefined)) return false;
        printProgress(ctx.io, `VM ${vm.name}: flattening disk ${d.index} (a qcow2 on ${info.backingFile ?? info.dataFile})`);
      } else {
        printProgress(ctx.io, `VM ${vm.name}: flattening disk ${d.index} (image ${d.image})`);
      }
      await qemuImg.flatten(d.file, dest);
      return true;
    },
    (inputs) => createBackup(target, vm, inputs, backupName),
  );
}

/**
 * The disks of a running VM at one point in time: the agent snapshots every
 * disk in one QMP transaction; each disk is copied at that snapshot into a
 * temporary file (flattened: an image disk's copy holds its image's data),
 * the copies are uploaded, then the copies and the snapshot are deleted (a
 * snapshot left behind is reported, and never fails a backup that is
 * complete).
 */
async function backupRunning(ctx: CliContext, opts: ReturnType<typeof resolveGlobalOptions>, vm: { uuid: string; name: string }, disks: readonly VmDiskFile[], target: BackupTarget, backupName: string | undefined): Promise<BackupManifest> {
  const snapshot = `drover-backup-${randomBytes(6).toString('hex')}`;
  const onProgress = (line: string): void => printProgress(ctx.io, line);
  await withStore(opts, (s) => requestSnapshot(s, { op: 'create', ref: vm.uuid, name: snapshot, waitSeconds: DEFAULT_SNAPSHOT_WAIT_SECONDS, onProgress }));
  try {
    const qemuImg = longQemuImg();
    return await withCopies(
      disks,
      async (d, dest) => {
        onProgress(`VM ${vm.name}: copying disk ${d.index} at snapshot ${snapshot}`);
        await qemuImg.convertSnapshot(d.file, snapshot, dest);
        return true;
      },
      (inputs) => createBackup(target, vm, inputs, backupName),
    );
  } finally {
    await withStore(opts, (s) => requestSnapshot(s, { op: 'delete', ref: vm.uuid, name: snapshot, waitSeconds: DEFAULT_SNAPSHOT_WAIT_SECONDS, onProgress })).catch((err: unknown) => {
      onProgress(`VM ${vm.name}: the temporary snapshot ${snapshot} was not deleted (${err instanceof Error ? err.message : String(err)}); delete it with \`drover vm snapshot delete ${vm.name} ${snapshot}\`.`);
    });
  }
}

export async function vmRestoreAction(ctx: CliContext, ref: string, backupWord: string, flags: RestoreFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env);
  const target = openTarget(ctx, flags);
  try {
    await withStore(opts, async (s) => {
      const repo = new VmRepository(s.kv, s.keys);
      const vm = await resolveVm(repo, ref);
      const manifest = findBackup(await listBackups(target, vm.uuid), backupWord);
      const stateDir = stateDirOption(flags.stateDir, ctx.env);
      if (flags.as === undefined) {
        requireAtRest(vm, 'a restore overwrites the disks of a stopped VM only; --as makes a new VM instead');
        const disks = vmDiskFiles(vm, stateDir);
        if (disks.some((d) => d.image !== undefined)) await ensureImageDisksDir(join(stateDir!, 'vms'), vm.uuid);
        await requireRegularFiles(disks);
        const paths = disks.map((d) => d.file);
        await restoreBackup(target, manifest, paths, true);
        target.close();
        if (opts.json) printJson(ctx.io, { uuid: vm.uuid, backup: manifest.id, disks: paths });
        else printLine(ctx.io, `VM ${manifest.vm.name} restored from backup ${manifest.id}.`);
        return;
      }
      await restoreAs(ctx, repo, vm, manifest, target, { as: flags.as, dir: flags.dir, stateDir }, opts.json);
    });
  } finally {
    target.close();
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
 * A new VM record from the backed-up VM's spec, status REQUESTED_NEW (it
 * boots): path disks restored under DIR/NEW-NAME/, image disks at the new
 * VM's overlay paths in the state dir (kept image disks, so they go with
 * the VM on REQUESTED_DELETE).
 */
async function restoreAs(
  ctx: CliContext,
  repo: VmRepository,
  vm: StoredVm,
  m: BackupManifest,
  target: BackupTarget & { close(): void },
  where: { as: string; dir: string | undefined; stateDir: string | undefined },
  json: boolean,
): Promise<void> {
  const { as, dir } = where;
  const uuid = randomUUID();
  const files = vmDiskFiles(vm, where.stateDir, uuid);
  if (dir === undefined && files.some((d) => d.image === undefined)) {
    throw new DroverError('USAGE', 'Restoring --as a new VM needs --dir, the directory on the VM\'s host where its path disks go.');
  }
  const { vms } = await repo.list();
  if (vms.some((v) => v.parsed.ok && v.parsed.value.name === as)) throw new DroverError('CONFLICT', `A VM named ${as} exists already.`);
  const raw = rawObject(vm.raw) ?? {};
  const spec = (raw.spec ?? {}) as Record<string, unknown>;
  const disks = vmDisks(vm);
  if (disks.length !== m.disks.length) throw new DroverError('CONFLICT', `VM ${m.vm.name} now has ${disks.length} disks, the backup ${m.disks.length}.`);
  const folder = dir !== undefined ? join(resolve(dir), as) : undefined;
  // The first directory mkdir created, if it created any (it may already exist, with the user's files).
  const created = folder !== undefined ? await mkdir(folder, { recursive: true }) : undefined;
  const paths = files.map((d) => (d.image !== undefined || folder === undefined ? d.file : join(folder, `disk-${d.index}`)));
  try {
    if (files.some((d) => d.image !== undefined)) await ensureImageDisksDir(join(where.stateDir!, 'vms'), uuid);
    await restoreBackup(target, m, paths); // on failure it removes the disks it wrote, never a file that was there
  } catch (err) {
    // The new VM's folder in the state dir is ours alone (a fresh uuid): leave nothing there.
    if (files.some((d) => d.image !== undefined)) await rm(join(where.stateDir!, 'vms', uuid), { recursive: true, force: true });
    // And the directories this restore created under --dir, if they are empty again (rmdir removes nothing else).
    if (folder !== undefined && created !== undefined) {
      for (let d = folder; ; d = dirname(d)) {
        if (!(await rmdir(d).then(() => true, () => false)) || d === created || d === dirname(d)) break;
      }
    }
    throw err;
  }
  target.close();
  const rawDisks = (spec.disks as Array<Record<string, unknown>>).map((d, i) => (files[i]?.image !== undefined ? d : { ...d, path: paths[i] }));
  const record = { uuid, name: as, ...(raw.host !== undefined ? { host: raw.host } : {}), status: 'REQUESTED_NEW', spec: { ...spec, disks: rawDisks } };
  if (!(await repo.create(uuid, record))) throw new DroverError('CONFLICT', `VM ${uuid} exists already.`);
  if (json) printJson(ctx.io, record);
  else printLine(ctx.io, uuid);
}

export async function listAction(ctx: CliContext, ref: string | undefined, flags: ListFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env);
  const uuid = ref === undefined ? undefined : await withStore(opts, async (s) => (await resolveVm(new VmRepository(s.kv, s.keys), ref)).uuid);
  const target = openTarget(ctx, flags);
  try {
    const list = await listBackups(target, uuid);
    if (opts.json) {
      printJson(ctx.io, list);
      return;
    }
    const rows = list.map((m) => [m.id, m.name, m.vm.name, m.created_at, String(m.disks.length), formatBytes(m.disks.reduce((n, d) => n + d.size, 0))]);
    const table = formatTable(['id', 'name', 'vm', 'created', 'disks', 'size'], rows, { header: true });
    if (table !== '') printLine(ctx.io, table.replace(/\n$/, ''));
  } finally {
    target.close();
  }
}

export async function deleteAction(ctx: CliContext, id: string, flags: ListFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env);
  const target = openTarget(ctx, flags);
  try {
    const m = findBackup(await listBackups(target), id);
    await deleteBackup(target, m);
    if (opts.json) printJson(ctx.io, { deleted: m.id });
    else printLine(ctx.io, `Backup ${m.id} deleted.`);
  } finally {
    target.close();
  }
}

/** Removes folders interrupted backups left (no manifest, nothing newer than --older-than seconds). */
export async function cleanAction(ctx: CliContext, ref: string | undefined, flags: CleanFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env);
  const seconds = Number(flags.olderThan);
  if (!/^\d+$/.test(flags.olderThan)) throw new DroverError('USAGE', 'Option --older-than needs a whole number of seconds.');
  const uuid = ref === undefined ? undefined : await withStore(opts, async (s) => (await resolveVm(new VmRepository(s.kv, s.keys), ref)).uuid);
  const target = openTarget(ctx, flags);
  try {
    const removed = await cleanIncompleteBackups(target, seconds * 1000, uuid);
    if (opts.json) printJson(ctx.io, { removed });
    else printLine(ctx.io, removed.length === 0 ? 'No incomplete backups to remove.' : `Removed ${removed.length} incomplete backup folder(s): ${removed.join(', ')}.`);
  } finally {
    target.close();
  }
}
