/**
 * What `drover vm backup|restore` and `drover backup list|delete|clean|store`
 * do; loaded on demand (docs/backups.md). The CLI runs the transfer itself,
 * on the host that holds the disks (src/vm-ops/vm-backup.ts, the same code
 * the agent runs for a backup asked through the API): `path` disks are
 * their files, `image` disks their overlays in the agent's state dir
 * (src/vm-ops/backup-disks.ts).
 */
import { randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { DroverError } from '../../lib/errors.js';
import { cleanIncompleteBackups, deleteBackup, findBackup, listBackups, restoreBackup, type BackupManifest, type BackupTarget } from '../../storage/backup.js';
import { describeBackupStore, readBackupStoreConfig, writeBackupStoreConfig } from '../../storage/backup-store-config.js';
import { ensureImageDisksDir } from '../../storage/prepare-disks.js';
import { createS3Client } from '../../storage/s3/client.js';
import { VmRepository, rawObject, type StoredVm } from '../../store/vm-repository.js';
import { vmDiskFiles, vmDisks } from '../../vm-ops/backup-disks.js';
import { resolveVm } from '../../vm-ops/resolve-vm.js';
import { backupVm, restoreVmDisks } from '../../vm-ops/vm-backup.js';
import type { CliContext, CliEnv } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags, type GlobalOptions } from '../global-options.js';
import { printJson, printLine, printProgress } from '../output/print.js';
import { ProgressBar, formatBytes } from '../output/progress.js';
import { formatTable } from '../output/table.js';
import { withStore } from '../store-session.js';
import { bucketGiven, resolveS3Settings, resolveTransferSettings, type S3Flags } from './s3-options.js';

export type BackupFlags = GlobalFlags & S3Flags & { name?: string; stateDir?: string };
export type RestoreFlags = GlobalFlags & S3Flags & { as?: string; dir?: string; stateDir?: string };
export type ListFlags = GlobalFlags & S3Flags;
export type CleanFlags = ListFlags & { olderThan: string };

/** `--state-dir`, else DROVER_STATE_DIR; checked to be absolute. */
function stateDirOption(flag: string | undefined, env: CliEnv): string | undefined {
  const dir = flag ?? (env.DROVER_STATE_DIR || undefined);
  if (dir !== undefined && !isAbsolute(dir)) throw new DroverError('USAGE', 'Option --state-dir must be an absolute path (the agent\'s state_dir).');
  return dir;
}

/** The bucket from flags or environment, else the cluster's backup store; with a progress bar on stderr. */
async function openTarget(ctx: CliContext, flags: S3Flags, opts: GlobalOptions): Promise<BackupTarget & { close(): void }> {
  const stored = bucketGiven(flags, ctx.env) ? null : await withStore(opts, (s) => readBackupStoreConfig(s.kv, s.keys));
  const settings = resolveS3Settings(flags, ctx.env, stored);
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

export async function vmBackupAction(ctx: CliContext, ref: string, flags: BackupFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const stateDir = stateDirOption(flags.stateDir, ctx.env);
  const target = await openTarget(ctx, flags, opts);
  try {
    const m = await withStore(opts, async (s) => {
      const vm = await resolveVm(s.vms, ref);
      const disks = vmDiskFiles(vm, stateDir);
      return backupVm(vm, disks, { store: s, target, ...(flags.name !== undefined ? { name: flags.name } : {}), onProgress: (line) => printProgress(ctx.io, line) });
    });
    target.close();
    if (opts.json) printJson(ctx.io, m);
    else printLine(ctx.io, m.id);
  } finally {
    target.close();
  }
}

export async function vmRestoreAction(ctx: CliContext, ref: string, backupWord: string, flags: RestoreFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const target = await openTarget(ctx, flags, opts);
  try {
    await withStore(opts, async (s) => {
      const repo = new VmRepository(s.kv, s.keys);
      const vm = await resolveVm(repo, ref);
      const manifest = findBackup(await listBackups(target, vm.uuid), backupWord);
      const stateDir = stateDirOption(flags.stateDir, ctx.env);
      if (flags.as === undefined) {
        const paths = await restoreVmDisks(vm, vmDiskFiles(vm, stateDir), manifest, target, stateDir, '--as makes a new VM instead');
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
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const uuid = ref === undefined ? undefined : await withStore(opts, async (s) => (await resolveVm(new VmRepository(s.kv, s.keys), ref)).uuid);
  const target = await openTarget(ctx, flags, opts);
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
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const target = await openTarget(ctx, flags, opts);
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
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const seconds = Number(flags.olderThan);
  if (!/^\d+$/.test(flags.olderThan)) throw new DroverError('USAGE', 'Option --older-than needs a whole number of seconds.');
  const uuid = ref === undefined ? undefined : await withStore(opts, async (s) => (await resolveVm(new VmRepository(s.kv, s.keys), ref)).uuid);
  const target = await openTarget(ctx, flags, opts);
  try {
    const removed = await cleanIncompleteBackups(target, seconds * 1000, uuid);
    if (opts.json) printJson(ctx.io, { removed });
    else printLine(ctx.io, removed.length === 0 ? 'No incomplete backups to remove.' : `Removed ${removed.length} incomplete backup folder(s): ${removed.join(', ')}.`);
  } finally {
    target.close();
  }
}

export async function storeGetAction(ctx: CliContext, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const config = await withStore(opts, (s) => readBackupStoreConfig(s.kv, s.keys));
  if (opts.json) printJson(ctx.io, config);
  else printLine(ctx.io, config ? describeBackupStore(config) : 'No backup store is set (drover backup store set).');
}

export async function storeSetAction(ctx: CliContext, flags: ListFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  if (flags.s3Bucket === undefined) throw new DroverError('USAGE', 'drover backup store set needs --s3-bucket (and --s3-endpoint, --s3-region, --s3-path-style for a server other than AWS).');
  // Flags only: the setting is the cluster's, not this shell's DROVER_S3_* environment.
  const { bucket, endpoint, region, path_style } = resolveS3Settings(flags, {});
  const config = await withStore(opts, (s) => writeBackupStoreConfig(s.kv, s.keys, { bucket, ...(endpoint !== undefined ? { endpoint } : {}), region, path_style }));
  if (opts.json) printJson(ctx.io, config);
  else printLine(ctx.io, `Backup store set: ${describeBackupStore(config)}.`);
}
