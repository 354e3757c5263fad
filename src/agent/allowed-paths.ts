/**
 * The agent's host path allow-list (config allowed_paths; docs/security.md,
 * "Host paths"), as the hypervisor reads it at each start: the configured
 * list, or by default the image cache <state>/images plus the cluster's
 * image store when it is a directory (read from etcd at each start, so a
 * store set later counts at once). The VM's own run dir is added by the
 * hypervisor itself.
 */
import { join } from 'node:path';
import type { KeySpace } from '../contract/keys.js';
import type { Logger } from '../lib/logger.js';
import { readImageStoreConfig } from '../storage/image-store-config.js';
import type { KvStore } from '../store/kv-store.js';

export interface AllowedPathsSource {
  /** allowed_paths from the config; undefined for the default. */
  configured: readonly string[] | undefined;
  stateRoot: string;
  kv: KvStore;
  keys: KeySpace;
  logger: Logger;
}

export function allowedPathsOf(src: AllowedPathsSource): () => Promise<readonly string[]> {
  if (src.configured !== undefined) {
    const list = [...src.configured];
    return () => Promise.resolve(list);
  }
  return async () => {
    const dirs = [join(src.stateRoot, 'images')];
    try {
      const store = await readImageStoreConfig(src.kv, src.keys);
      if (store?.type === 'dir') dirs.push(store.path);
    } catch (err) {
      // etcd away or a bad setting: the start goes on with the cache alone (a path in the store is then refused, with its name).
      src.logger.warn({ err }, 'could not read the image store setting for allowed_paths');
    }
    return dirs;
  };
}
