/**
 * Backups of a VM's disks in S3, and restores from them.
 *
 * Layout in the bucket (docs/backups.md):
 *   backups/<vm-uuid>/<backup-id>/disk-<i>        one object per disk, as stored (qcow2/raw)
 *   backups/<vm-uuid>/<backup-id>/manifest.json   written last
 *
 * A backup exists only when its manifest does: disks are uploaded first
 * (multipart, each part checked), the manifest (sizes, sha256 of every
 * disk) goes last in one PUT. A backup that fails part-way has no manifest,
 * so `listBackups` never shows it; its disks objects are removed on failure
 * (best effort) and `deleteBackup` removes the manifest first, then the
 * disks, so a half-deleted backup is invisible too. Restores check every
 * disk's sha256 against the manifest before the file is renamed into place.
 *
 * The disk files must not change while they are read: the caller backs up
 * a stopped VM, or a point-in-time copy of a running one's disks.
 */
import { randomBytes } from 'node:crypto';
import { access, rm } from 'node:fs/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { z } from 'zod';
import { DroverError } from '../lib/errors.js';
import { isS3NotFound, translateS3Error } from './s3/client.js';
import type { BackupTransferSettings } from './backup-settings.js';
import { downloadFileMultipart } from './s3/multipart-download.js';
import { uploadFileMultipart } from './s3/multipart-upload.js';
import { retryS3 } from './s3/multipart-retry.js';

export const BACKUP_PREFIX = 'backups/';

export const backupManifestSchema = z.object({
  version: z.literal(1),
  id: z.string().regex(/^[0-9TZ]+-[0-9a-f]{6}$/),
  name: z.string(),
  vm: z.object({ uuid: z.string(), name: z.string() }),
  created_at: z.string(),
  disks: z.array(
    z.object({
      index: z.int().min(0),
      key: z.string(),
      source: z.string(),
      size: z.int().min(0),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      /** An image disk's `image` at backup time; its object is then a self-contained (flattened) qcow2. */
      image: z.string().optional(),
    }),
  ),
});
export type BackupManifest = z.infer<typeof backupManifestSchema>;

export interface BackupTarget {
  client: S3Client;
  bucket: string;
  transfer: BackupTransferSettings;
  /** Milliseconds one part or chunk may take before it is tried again. */
  partTimeoutMs?: number;
  onProgress?: (what: string, done: number, total: number) => void;
}

/** Sortable by time, unique enough: 20261123T060501Z-1a2b3c. */
export function newBackupId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

const backupDir = (vmUuid: string, id: string): string => `${BACKUP_PREFIX}${vmUuid}/${id}/`;

/** One disk to back up: the file to upload, and what the manifest says of it. */
export interface BackupDiskInput {
  file: string;
  /** The disk's own file when `file` is a copy (a snapshot's, a flattened overlay); `file` by default. */
  source?: string;
  /** An image disk's `image`. */
  image?: string;
}

/** Uploads every disk file (a path, or what it is a copy of), then the manifest that makes the backup visible. */
export async function createBackup(
  target: BackupTarget,
  vm: { uuid: string; name: string },
  disks: ReadonlyArray<string | BackupDiskInput>,
  name?: string,
): Promise<BackupManifest> {
  const id = newBackupId();
  const dir = backupDir(vm.uuid, id);
  const t = target.transfer;
  const uploaded: BackupManifest['disks'] = [];
  const timeoutMs = target.partTimeoutMs ?? 120_000;
  try {
    for (const [index, disk] of disks.entries()) {
      const { file, source = file, image } = typeof disk === 'string' ? { file: disk } : disk;
      const key = `${dir}disk-${index}`;
      const r = await uploadFileMultipart({
        client: target.client, bucket: target.bucket, key, file,
        chunkSize: t.s3_upload_chunk_size, parallel: t.parallel_uploads, maxParallel: t.max_parallel_uploads,
        ...(target.partTimeoutMs !== undefined ? { partTimeoutMs: target.partTimeoutMs } : {}),
        onProgress: (done, total) => target.onProgress?.(`disk ${index}`, done, total),
      });
      uploaded.push({ index, key, source, size: r.size, sha256: r.sha256, ...(image !== undefined ? { image } : {}) });
    }
    const manifest: BackupManifest = { version: 1, id, name: name ?? id, vm: { uuid: vm.uuid, name: vm.name }, created_at: new Date().toISOString(), disks: uploaded };
    const body = JSON.stringify(manifest, null, 2);
    await retryS3(
      (signal) => target.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: `${dir}manifest.json`, Body: body, ContentType: 'application/json' }), { abortSignal: signal }),
      `put of s3://${target.bucket}/${dir}manifest.json`,
      5,
      timeoutMs,
    );
    return manifest;
  } catch (err) {
    // Best effort and bounded: without a manifest these objects are no backup anyway.
    await Promise.all(uploaded.map((d) => deleteObject(target, d.key, AbortSignal.timeout(timeoutMs)).catch(() => undefined)));
    throw err;
  }
}

/** Every object under the backups of one VM (uuid) or of all: key and last change (ms). */
async function listBackupObjects(target: Pick<BackupTarget, 'client' | 'bucket'>, vmUuid?: string): Promise<Array<{ key: string; modified: number }>> {
  const prefix = vmUuid !== undefined ? `${BACKUP_PREFIX}${vmUuid}/` : BACKUP_PREFIX;
  const out: Array<{ key: string; modified: number }> = [];
  let token: string | undefined;
  do {
    const page = await target.client
      .send(new ListObjectsV2Command({ Bucket: target.bucket, Prefix: prefix, ...(token !== undefined ? { ContinuationToken: token } : {}) }))
      .catch((err: unknown) => {
        throw translateS3Error(err, `list of s3://${target.bucket}/${prefix}`);
      });
    for (const o of page.Contents ?? []) if (o.Key !== undefined) out.push({ key: o.Key, modified: o.LastModified?.getTime() ?? 0 });
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out;
}

/** Backups with a manifest, oldest first; of one VM (uuid) or of all. */
export async function listBackups(target: Pick<BackupTarget, 'client' | 'bucket'>, vmUuid?: string): Promise<BackupManifest[]> {
  const keys = (await listBackupObjects(target, vmUuid)).map((o) => o.key).filter((k) => k.endsWith('/manifest.json'));
  const manifests = await Promise.all(keys.map((k) => readManifest(target, k)));
  return manifests.filter((m): m is BackupManifest => m !== undefined).sort((a, b) => a.id.localeCompare(b.id));
}

async function readManifest(target: Pick<BackupTarget, 'client' | 'bucket'>, key: string): Promise<BackupManifest | undefined> {
  try {
    const out = await target.client.send(new GetObjectCommand({ Bucket: target.bucket, Key: key }));
    const parsed = backupManifestSchema.safeParse(JSON.parse((await out.Body?.transformToString()) ?? ''));
    return parsed.success ? parsed.data : undefined;
  } catch (err) {
    if (isS3NotFound(err) || err instanceof SyntaxError) return undefined; // deleted meanwhile, or not ours
    throw translateS3Error(err, `get of s3://${target.bucket}/${key}`);
  }
}

/** Finds one backup by id (or name, when unique) among `list`. */
export function findBackup(list: readonly BackupManifest[], word: string): BackupManifest {
  const byId = list.find((m) => m.id === word);
  if (byId !== undefined) return byId;
  const byName = list.filter((m) => m.name === word);
  if (byName.length === 1 && byName[0] !== undefined) return byName[0];
  if (byName.length > 1) throw new DroverError('AMBIGUOUS', `Backup name "${word}" matches ${byName.length} backups (${byName.map((m) => m.id).join(', ')}); give the id.`);
  throw new DroverError('NOT_FOUND', `No backup "${word}" was found.`);
}

/**
 * Removes what interrupted backups left (a process killed mid-backup cannot
 * clean up): backup folders without a manifest whose newest object is older
 * than `olderThanMs` (so a backup still uploading is left alone). Returns
 * the folders removed. Incomplete multipart uploads are not listed by every
 * S3-compatible server; an AbortIncompleteMultipartUpload lifecycle rule on
 * the bucket removes those (docs/backups.md).
 */
export async function cleanIncompleteBackups(target: Pick<BackupTarget, 'client' | 'bucket'>, olderThanMs: number, vmUuid?: string, now = Date.now()): Promise<string[]> {
  const folders = new Map<string, { keys: string[]; newest: number; manifest: boolean }>();
  for (const o of await listBackupObjects(target, vmUuid)) {
    const m = /^([^/]+\/[^/]+\/)[^/]+$/.exec(o.key.slice(BACKUP_PREFIX.length));
    if (m?.[1] === undefined) continue;
    const dir = `${BACKUP_PREFIX}${m[1]}`;
    const f = folders.get(dir) ?? { keys: [], newest: 0, manifest: false };
    f.keys.push(o.key);
    f.newest = Math.max(f.newest, o.modified);
    f.manifest ||= o.key === `${dir}manifest.json`;
    folders.set(dir, f);
  }
  const removed: string[] = [];
  for (const [dir, f] of folders) {
    if (f.manifest || now - f.newest < olderThanMs) continue;
    for (const k of f.keys) await deleteObject(target, k);
    removed.push(dir);
  }
  return removed.sort();
}

/** Manifest first (the backup disappears at once), then the disks. */
export async function deleteBackup(target: Pick<BackupTarget, 'client' | 'bucket'>, manifest: BackupManifest): Promise<void> {
  const dir = backupDir(manifest.vm.uuid, manifest.id);
  await deleteObject(target, `${dir}manifest.json`);
  for (const d of manifest.disks) await deleteObject(target, d.key);
}

async function deleteObject(target: Pick<BackupTarget, 'client' | 'bucket'>, key: string, signal?: AbortSignal): Promise<void> {
  await target.client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key: key }), signal !== undefined ? { abortSignal: signal } : {}).catch((err: unknown) => {
    if (!isS3NotFound(err)) throw translateS3Error(err, `delete of s3://${target.bucket}/${key}`);
  });
}

/**
 * Downloads every disk of `manifest` to `paths[i]` (one per disk, in
 * order), each checked against the manifest's sha256 before it is renamed
 * into place. An existing file is replaced only with `overwrite`; without
 * it, a restore that fails part way also removes the disks it had already
 * written (they did not exist before it), so it can simply be run again.
 */
export async function restoreBackup(target: BackupTarget, manifest: BackupManifest, paths: readonly string[], overwrite = false): Promise<void> {
  if (paths.length !== manifest.disks.length) {
    throw new DroverError('USAGE', `Backup ${manifest.id} has ${manifest.disks.length} disks, not ${paths.length}.`);
  }
  if (!overwrite) {
    for (const p of paths) {
      if (await access(p).then(() => true, () => false)) throw new DroverError('CONFLICT', `Disk ${p} already exists; it would be overwritten.`);
    }
  }
  const t = target.transfer;
  const written: string[] = [];
  try {
    for (const [i, disk] of manifest.disks.entries()) {
      const dest = paths[i] ?? `disk-${i}`;
      await downloadFileMultipart({
        client: target.client, bucket: target.bucket, key: disk.key, dest, sha256: disk.sha256,
        chunkSize: t.s3_download_chunk_size, parallel: t.parallel_downloads, maxParallel: t.max_parallel_downloads, preload: t.preload,
        ...(target.partTimeoutMs !== undefined ? { chunkTimeoutMs: target.partTimeoutMs } : {}),
        onProgress: (done, total) => target.onProgress?.(`disk ${i}`, done, total),
      });
      written.push(dest);
    }
  } catch (err) {
    if (!overwrite) for (const p of written) await rm(p, { force: true });
    throw err;
  }
}
