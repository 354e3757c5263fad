/**
 * The transfer keys of backups and restores, chunter's names (seed 000),
 * spelled correctly: one zod shape for the agent's config and the CLI.
 * Defaults follow chunter: 5 MiB parts (S3's smallest part but the last),
 * 5 in flight rising to 10, the same for downloads, 10 chunks preloaded
 * (so preload never caps the parallelism at its defaults; memory per
 * transfer stays near 10 chunks = 50 MiB).
 */
import { z } from 'zod';

const MiB = 1024 * 1024;

export const backupTransferShape = {
  /** Bytes per uploaded part; S3 refuses parts under 5 MiB (but the last). */
  s3_upload_chunk_size: z.int().min(5 * MiB).max(5 * 1024 * MiB).default(5 * MiB),
  /** Parts uploaded in parallel at first. */
  parallel_uploads: z.int().min(1).max(64).default(5),
  /** Parts uploaded in parallel at most, reached while throughput keeps rising. */
  max_parallel_uploads: z.int().min(1).max(64).default(10),
  /** Bytes per ranged GET when restoring. */
  s3_download_chunk_size: z.int().min(64 * 1024).max(1024 * MiB).default(5 * MiB),
  parallel_downloads: z.int().min(1).max(64).default(5),
  max_parallel_downloads: z.int().min(1).max(64).default(10),
  /** Chunk buffers of a restore at most: fetched and not yet both written and hashed (bounds memory). */
  preload: z.int().min(1).max(256).default(10),
};

export const backupTransferSchema = z.strictObject(backupTransferShape);
export type BackupTransferSettings = Readonly<z.infer<typeof backupTransferSchema>>;

/** The defaults, for callers without a config file. */
export const DEFAULT_BACKUP_TRANSFER: BackupTransferSettings = Object.freeze(backupTransferSchema.parse({}));
