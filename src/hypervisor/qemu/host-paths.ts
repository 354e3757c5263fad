/**
 * The host path allow-list (docs/security.md, "Host paths"): which files a
 * VM record may make qemu read or write.
 *
 * A record's `path` disks, `boot.kernel` and `boot.initrd` name files on the
 * host. Each one must be absolute, have no `..` segment, use only a
 * conservative set of characters, lie under an allowed directory as written,
 * and still lie under one once every symlink is resolved, so a symlink inside
 * an allowed directory that points out of it is refused. The checks that need
 * no I/O come first, so a path outside the list is refused before anything
 * about it (even whether it exists) is looked at.
 *
 * Every refusal is terminal (INVALID_SPEC) and one sentence naming the path.
 * Opening the checked file is host-files.ts's job.
 */
import { realpath } from 'node:fs/promises';
import { isAbsolute, normalize, sep } from 'node:path';
import { DroverError } from '../../lib/errors.js';

/**
 * Characters a host path may hold: letters, digits and `/ . _ - + @ ~`.
 * Commas (qemu's option separator), `=` and `:` (key=value and protocol
 * prefixes in qemu's parsers), spaces, quotes, control characters and
 * anything outside ASCII are refused: such a path is legal for Linux, but
 * nothing a VM needs, and never reaching qemu's parsers is the simple rule.
 */
export const SAFE_PATH_RE = /^[A-Za-z0-9/._+@~-]+$/;

/** The refusal of one host path, for `what` (e.g. "kernel", "disk 1"). */
export function pathRefused(what: string, path: string, why: string): DroverError {
  return new DroverError('INVALID_SPEC', `The ${what} path ${JSON.stringify(path)} ${why}.`, false);
}

/** The first character of `path` outside SAFE_PATH_RE, described for people ("a comma", "U+000A"). */
function describeBadChar(path: string): string | null {
  for (const ch of path) {
    if (SAFE_PATH_RE.test(ch)) continue;
    if (ch === ',') return 'a comma';
    if (ch === ' ') return 'a space';
    const code = ch.codePointAt(0) ?? 0;
    return `the character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return null;
}

/** True when `path` is `dir` or lies below it (both normalized, absolute). */
export function isUnder(path: string, dir: string): boolean {
  const d = dir.endsWith(sep) ? dir : dir + sep;
  return path === dir || path.startsWith(d);
}

/**
 * The checks that need no I/O: absolute, no `..`, safe characters, under an
 * allowed directory as written. Throws the refusal; returns nothing.
 */
export function checkPathSyntax(what: string, path: string, allowed: readonly string[]): void {
  if (!isAbsolute(path)) throw pathRefused(what, path, 'is not absolute');
  if (path.split('/').includes('..')) throw pathRefused(what, path, 'contains a ".." segment');
  const bad = describeBadChar(path);
  if (bad !== null) throw pathRefused(what, path, `contains ${bad}, which drover does not pass to qemu (allowed: letters, digits and / . _ - + @ ~)`);
  const clean = normalize(path);
  if (!allowed.some((dir) => isUnder(clean, dir))) {
    throw pathRefused(what, path, `is outside this host's allowed_paths (${allowed.join(', ') || 'none'})`);
  }
}

/**
 * The allowed directories with their symlinks resolved (a directory that
 * does not exist is dropped: nothing can lie under it), so the real path of
 * a file can be compared with them.
 */
export async function resolveAllowedDirs(dirs: readonly string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const dir of dirs) {
    if (!isAbsolute(dir)) continue;
    out.add(normalize(dir));
    const real = await realpath(dir).catch(() => null);
    if (real !== null) out.add(real);
  }
  return [...out];
}

/**
 * Every check of a host path, the real path included: returns the real path
 * (every symlink resolved), which is what gets opened.
 */
export async function checkHostPath(what: string, path: string, allowed: readonly string[]): Promise<string> {
  checkPathSyntax(what, path, allowed);
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw pathRefused(what, path, code === 'ENOENT' ? 'does not exist' : `cannot be resolved (${code ?? (err as Error).message})`);
  }
  if (!allowed.some((dir) => isUnder(real, dir))) {
    throw pathRefused(what, path, `resolves to ${real}, outside this host's allowed_paths`);
  }
  const bad = describeBadChar(real);
  if (bad !== null) throw pathRefused(what, path, `resolves to a path that contains ${bad}`);
  return real;
}
