/**
 * Where a `user` may name kernel and initrd files: the API's `--boot-dir`s
 * and, when the image store is a directory, that directory (admin-fields.ts).
 */
import { readImageStoreConfig } from '../storage/image-store-config.js';
import type { Principal } from '../auth/authenticate.js';
import { hasPrivilege } from '../auth/privileges.js';
import type { ApiDeps } from './context.js';

/** Admins may name any file, so for them nothing is read. */
export async function bootDirsFor(deps: ApiDeps, principal: Principal): Promise<string[]> {
  return hasPrivilege(principal.role, 'Sys.Admin') ? [] : bootDirsOf(deps);
}

export async function bootDirsOf(deps: ApiDeps): Promise<string[]> {
  const dirs = [...deps.settings.bootDirs];
  const store = await readImageStoreConfig(deps.store.kv, deps.store.keys).catch(() => null);
  if (store?.type === 'dir') dirs.push(store.path);
  return dirs;
}
