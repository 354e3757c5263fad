/**
 * What an agent needs to turn image disks into files: the image records and
 * the store setting read from etcd when a start needs them (no watch: a
 * start is rare, and the newest setting is then always the one used), the
 * host's cache under `<state>/images`, and qemu-img.
 */
import { join } from 'node:path';
import { deletingImageRef, resolveImageRef, type ImageRecord } from '../contract/image-record.js';
import { DroverError } from '../lib/errors.js';
import type { KeySpace } from '../contract/keys.js';
import type { Logger } from '../lib/logger.js';
import { ImageRepository } from '../store/image-repository.js';
import type { KvStore } from '../store/kv-store.js';
import { ImageCache } from './image-cache.js';
import type { ImageStore } from './image-store.js';
import { openImageStore, requireImageStoreConfig } from './image-store-config.js';
import { DiskPreparer } from './prepare-disks.js';
import { QemuImg } from './qemu-img.js';
import type { S3Credentials } from './s3/location.js';

export interface AgentDisksOptions {
  kv: KvStore;
  keys: KeySpace;
  /** The agent's state dir. */
  stateRoot: string;
  /** `<state>/vms`, the hypervisor's run root. */
  vmsDir: string;
  /** This host's S3 credentials (config), read at each download; the SDK's default chain when undefined. */
  credentials: () => S3Credentials | undefined;
  /** Downloads of an image tried before a start fails (config image_download_attempts). */
  downloadAttempts: number;
  logger: Logger;
  /** A download refused for its checksum (the agent reports `image.refused`). */
  onRefused?(image: ImageRecord, why: string, attempt: number): void;
  qemuImgBinary?: string;
  /** Delay before the second download, doubling (1 s). */
  retryDelayMs?: number;
}

export function createAgentDiskPreparer(opts: AgentDisksOptions): DiskPreparer {
  const images = new ImageRepository(opts.kv, opts.keys);
  // One store object per setting: S3 clients keep connections alive.
  let opened: { key: string; store: ImageStore } | null = null;
  const openStore = async (): Promise<ImageStore> => {
    const config = await requireImageStoreConfig(opts.kv, opts.keys);
    const creds = opts.credentials();
    const key = JSON.stringify([config, creds?.accessKeyId ?? null, creds?.secretAccessKey ?? null]);
    if (opened?.key !== key) opened = { key, store: await openImageStore(config, creds) };
    return opened.store;
  };
  const cache = new ImageCache({
    dir: join(opts.stateRoot, 'images'),
    openStore,
    attempts: opts.downloadAttempts,
    ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
    logger: opts.logger,
    ...(opts.onRefused ? { onRefused: opts.onRefused } : {}),
  });
  return new DiskPreparer({
    vmsDir: opts.vmsDir,
    cache,
    resolveImage: async (ref) => {
      const valid = await images.listValid();
      const deleting = deletingImageRef(ref, valid);
      if (deleting) {
        // Retryable: the delete either completes (then the image is gone and the start fails) or is refused (then it is active again).
        throw new DroverError('IMAGE_ERROR', `Image ${deleting.name}:${deleting.version} is being deleted (drover image delete); the start waits to see whether the delete goes through.`, true);
      }
      return resolveImageRef(ref, valid);
    },
    qemuImg: new QemuImg(opts.qemuImgBinary !== undefined ? { binary: opts.qemuImgBinary } : {}),
  });
}
