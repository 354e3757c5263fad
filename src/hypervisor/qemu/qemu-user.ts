/**
 * The unprivileged user qemu runs as (config `qemu_user`, `drover-qemu` by
 * default; docs/security.md, "Confined qemu"), looked up once when the agent
 * starts. The lookup reads /etc/passwd: the user is a local system user
 * (scripts/install-deps.sh creates it), never one from a directory service.
 */
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DroverError } from '../../lib/errors.js';

export interface QemuUser {
  name: string;
  uid: number;
  gid: number;
}

/** How to create the user, quoted in the error when it is missing. */
export const CREATE_QEMU_USER = 'useradd --system --no-create-home --shell /usr/sbin/nologin drover-qemu';

/**
 * The user named `name`, or null for "root" (qemu then runs as the agent's
 * own user, which the agent logs as a warning). A missing user, or one with
 * uid 0 under another name, is a CONFIG_INVALID error that says what to do.
 */
export async function lookupQemuUser(name: string, passwdFile = '/etc/passwd'): Promise<QemuUser | null> {
  if (name === 'root') return null;
  let text: string;
  try {
    text = await readFile(passwdFile, 'utf8');
  } catch (err) {
    throw new DroverError('CONFIG_INVALID', `The user list ${passwdFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}), so qemu_user ${name} cannot be looked up.`);
  }
  for (const line of text.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user !== name) continue;
    const u = Number(uid);
    const g = Number(gid);
    if (!Number.isInteger(u) || !Number.isInteger(g)) break;
    if (u === 0) throw new DroverError('CONFIG_INVALID', `qemu_user ${name} has uid 0; qemu must run as an unprivileged user (or set qemu_user = "root" to run it as root knowingly).`);
    return { name, uid: u, gid: g };
  }
  throw new DroverError(
    'CONFIG_INVALID',
    `qemu_user ${name} does not exist on this host; create it (${name === 'drover-qemu' ? CREATE_QEMU_USER : `useradd --system ${name}`}, as scripts/install-deps.sh does) or set qemu_user to an existing unprivileged user.`,
  );
}

/**
 * Throws unless `user` may search every directory from / down to `dir`
 * (qemu, running as it, makes its sockets in `dir`'s subdirectories). The
 * agent makes its state dir and vms/ searchable itself; the directories
 * above them are the operator's, so the error names the one to fix.
 */
export async function checkQemuUserReaches(dir: string, user: QemuUser): Promise<void> {
  const parts = resolve(dir).split('/').filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const d = `/${parts.slice(0, i).join('/')}`;
    const st = await stat(d).catch(() => null);
    if (!st) return; // made later by the agent itself (searchable)
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) {
      throw new DroverError(
        'CONFIG_INVALID',
        `qemu_user ${user.name} cannot reach ${dir}: ${d} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; make it searchable (chmod o+x ${d}) or choose a state_dir under searchable directories.`,
      );
    }
  }
}
