/**
 * What `drover vm backup|restore` and `drover backup list|delete` do;
 * loaded on demand. First version (docs/backups.md): the CLI runs the
 * transfer itself, on the host that holds the disks, reading the VM's disk
 * paths from its record; `path` disks only. A stopped VM's files are read
 * as they are. A running VM's qcow2 disks are read at a temporary snapshot
 * the agent takes of all of them at once (`snapshot_request`, one QMP
 * transaction): copied with `qemu-img convert -U -l snapshot.name=...`,
 * uploaded, then the copies and the snapshot are deleted.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DroverError } from '../../lib/errors.js';
import { cleanIncompleteBackups, createBackup, deleteBackup, findBackup, listBackups, restoreBackup, type BackupManifest, type BackupTarget } from '../../storage/backup.js';
import { QemuImg } from '../../storage/qemu-img.js';
import { createS3Client } from '../../storage/s3/client.js';
import { VmRepository, rawObject, type StoredVm } from '../../store/vm-repository.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { DEFAULT_SNAPSHOT_WAIT_SECONDS } from '../commands/vm-snapshot.js';
import { printJson, printLine, printProgress } from '../output/print.js';
import { ProgressBar, formatBytes } from '../output/progress.js';
import { formatTable } from '../output/table.js';
import { withStore } from '../store-session.js';
import { resolveVm } from '../vm/resolve-vm.js';
import { requestSnapshot } from '../vm/snapshot-vm.js';
import { resolveS3Settings, resolveTransferSettings, type S3Flags } from './s3-options.js';

export type BackupFlags = GlobalFlags & S3Flags & { name?: string };
export type RestoreFlags = GlobalFlags & S3Flags & { as?: string; dir?: string };
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

function diskPaths(vm: StoredVm): string[] {
  if (!vm.parsed.ok) throw new DroverError('INVALID_SPEC', `VM ${vm.uuid} has an invalid record: ${vm.parsed.error}`);
  const disks = vm.parsed.value.spec.disks ?? [];
  if (disks.length === 0) throw new DroverError('USAGE', `VM ${vm.parsed.value.name} has no disks to back up.`);
  return disks.map((d, i) => {
    if (typeof d.path !== 'string') throw new DroverError('USAGE', `Disk ${i} of VM ${vm.parsed.ok ? vm.parsed.value.name : vm.uuid} has no path; this version backs up path disks only.`);
    return d.path;
  });
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
  const paths = diskPaths(vm);
  const name = vm.parsed.ok ? vm.parsed.value.name : vm.uuid;
  if (running) await requireQcow2(name, paths);
  const target = openTarget(ctx, flags);
  try {
    const m = running
      ? await backupRunning(ctx, opts, { uuid: vm.uuid, name }, paths, target, flags.name)
      : await createBackup(target, { uuid: vm.uuid, name }, paths, flags.name);
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

/**
 * The disks of a running VM at one point in time: the agent snapshots every
 * disk in one QMP transaction; each disk is copied at that snapshot into a
 * temporary file, the copies are uploaded, then the copies and the snapshot
 * are deleted (a snapshot left behind is reported, and never fails a backup
 * that is complete).
 */
async function backupRunning(ctx: CliContext, opts: ReturnType<typeof resolveGlobalOptions>, vm: { uuid: string; name: string }, paths: readonly string[], target: BackupTarget, backupName: string | undefined): Promise<BackupManifest> {
  const snapshot = `drover-backup-${randomBytes(6).toString('hex')}`;
  const onProgress = (line: string): void => printProgress(ctx.io, line);
  await withStore(opts, (s) => requestSnapshot(s, { op: 'create', ref: vm.uuid, name: snapshot, waitSeconds: DEFAULT_SNAPSHOT_WAIT_SECONDS, onProgress }));
  const dir = await mkdtemp(join(tmpdir(), 'drover-backup-'));
  try {
    const qemuImg = new QemuImg({ timeoutMs: 24 * 3600_000 });
    const copies: string[] = [];
    for (const [i, path] of paths.entries()) {
      const copy = join(dir, `disk-${i}`);
      onProgress(`VM ${vm.name}: copying disk ${i} at snapshot ${snapshot}`);
      await qemuImg.convertSnapshot(path, snapshot, copy);
      copies.push(copy);
    }
    return await createBackup(target, vm, copies, backupName, paths);
  } finally {
    await rm(dir, { recursive: true, force: true });
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
      if (flags.as === undefined) {
        requireAtRest(vm, 'a restore overwrites the disks of a stopped VM only; --as makes a new VM instead');
        const paths = diskPaths(vm);
        await restoreBackup(target, manifest, paths, true);
        target.close();
        if (opts.json) printJson(ctx.io, { uuid: vm.uuid, backup: manifest.id, disks: paths });
        else printLine(ctx.io, `VM ${manifest.vm.name} restored from backup ${manifest.id}.`);
        return;
      }
      await restoreAs(ctx, repo, vm, manifest, target, flags.as, flags.dir, opts.json);
    });
  } finally {
    target.close();
  }
}

/** A new VM record from the backed-up VM's spec, its disks under DIR/NEW-NAME/, status REQUESTED_NEW (it boots). */
async function restoreAs(ctx: CliContext, repo: VmRepository, vm: StoredVm, m: BackupManifest, target: BackupTarget & { close(): void }, as: string, dir: string | undefined, json: boolean): Promise<void> {
  if (dir === undefined) throw new DroverError('USAGE', 'Restoring --as a new VM needs --dir, the directory on the VM\'s host where its disks go.');
  const { vms } = await repo.list();
  if (vms.some((v) => v.parsed.ok && v.parsed.value.name === as)) throw new DroverError('CONFLICT', `A VM named ${as} exists already.`);
  const raw = rawObject(vm.raw) ?? {};
  const spec = (raw.spec ?? {}) as Record<string, unknown>;
  const disks = (Array.isArray(spec.disks) ? spec.disks : []) as Array<Record<string, unknown>>;
  if (disks.length !== m.disks.length) throw new DroverError('CONFLICT', `VM ${m.vm.name} now has ${disks.length} disks, the backup ${m.disks.length}.`);
  const folder = join(resolve(dir), as);
  await mkdir(folder, { recursive: true });
  const paths = m.disks.map((d) => join(folder, `disk-${d.index}`));
  await restoreBackup(target, m, paths);
  target.close();
  const uuid = randomUUID();
  const record = { uuid, name: as, ...(raw.host !== undefined ? { host: raw.host } : {}), status: 'REQUESTED_NEW', spec: { ...spec, disks: disks.map((d, i) => ({ ...d, path: paths[i] })) } };
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
