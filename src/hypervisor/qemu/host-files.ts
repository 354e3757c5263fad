/**
 * Opens a VM's host files in the agent, after the allow-list check
 * (host-paths.ts), and hands qemu the open descriptors instead of the paths
 * (docs/security.md, "Host paths"). A path cannot then be swapped between
 * the check and qemu's use: what qemu gets is the very file that was checked.
 *
 * - Disks: each file's descriptors (one read-write, one read-only: qemu dups
 *   the one whose access mode it asks for) go into an fdset, `-add-fd
 *   fd=N,set=S`, and qemu opens `/dev/fdset/S`. A qcow2 file's backing chain
 *   is read here from the headers, each backing file checked and passed the
 *   same way, and named explicitly in -blockdev (`backing` set, or null at
 *   the end), so qemu never opens a path from an image header.
 * - Kernel and initrd: qemu 7.2's loader opens a file name itself (no fdset
 *   there), so it gets `/proc/self/fd/N` of an inherited descriptor. Opening
 *   that link re-checks the file's own permissions (not its directories'),
 *   so the file must be readable by qemu's user; this is checked here, with
 *   a sentence that says so.
 *
 * After the real path check, the opened descriptor's own path
 * (/proc/self/fd/N) is compared with the real path: a file swapped in
 * between is refused.
 */
import { constants } from 'node:fs';
import { open, readlink, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { VmSpec } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import { fdsetOf, imageDiskError, type DiskFormat, type PassedDisk, type PassedFile, type PassedFiles } from './build-qemu-args.js';
import { checkHostPath, pathRefused } from './host-paths.js';
import type { QemuUser } from './qemu-user.js';

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const BACKING_FORMAT_EXT = 0xe2792aca;
/** Longer backing chains are refused (qemu's own limit is far higher; no real chain is this long). */
const MAX_CHAIN = 16;

/** PassedFiles plus the agent's open descriptors behind them. */
export interface OpenedSpecFiles extends PassedFiles {
  /** Extra descriptors for the child, in order: the child gets them as fd 3, 4, ... */
  handles: FileHandle[];
  disks: Array<PassedDisk | undefined>;
  /** What qemu calls each file (`/dev/fdset/S`, `/proc/self/fd/N`) and its host path, to put qemu's messages in the user's terms. */
  names: Array<[string, string]>;
  /** Closes the agent's copies (after the spawn, or when it failed). */
  close(): Promise<void>;
}

export interface OpenSpecOptions {
  /** Resolved allowed directories (resolveAllowedDirs), the VM's own run dir included. */
  allowed: readonly string[];
  /** Who qemu runs as (null: the agent's own user), for the kernel/initrd read check. */
  user: QemuUser | null;
}

/** qemu's message with the names qemu knows the files by replaced by their host paths. */
export function inUserTerms(message: string, names: ReadonlyArray<[string, string]>): string {
  // Longest first: /dev/fdset/17 before /dev/fdset/1.
  return [...names].sort((a, b) => b[0].length - a[0].length).reduce((m, [qemuName, path]) => m.replaceAll(qemuName, path), message);
}

/** Checks and opens every host file of a spec. On any refusal, closes what it opened and throws. */
export async function openSpecFiles(spec: VmSpec, opts: OpenSpecOptions): Promise<OpenedSpecFiles> {
  const handles: FileHandle[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(handles.splice(0).map((h) => h.close().catch(() => undefined)));
  };
  const childFd = (h: FileHandle): number => {
    handles.push(h);
    return 2 + handles.length; // stdin, stdout, stderr come first
  };
  try {
    const out: OpenedSpecFiles = { handles, disks: [], names: [], close };
    if (spec.boot) {
      out.kernel = `/proc/self/fd/${childFd(await openBootFile('kernel', spec.boot.kernel, opts))}`;
      out.names.push([out.kernel, spec.boot.kernel]);
      if (spec.boot.initrd !== undefined) {
        out.initrd = `/proc/self/fd/${childFd(await openBootFile('initrd', spec.boot.initrd, opts))}`;
        out.names.push([out.initrd, spec.boot.initrd]);
      }
    }
    for (const [i, disk] of (spec.disks ?? []).entries()) {
      if (disk.rbd !== undefined) {
        out.disks.push(undefined); // in the Ceph cluster, not a host path
        continue;
      }
      if (disk.path === undefined) throw imageDiskError(i, disk.image ?? '?');
      out.disks.push(await openDiskChain(`disk ${i + 1}`, disk.path, disk.format, opts, childFd, (k, path) => out.names.push([`/dev/fdset/${fdsetOf(i, k)}`, path])));
    }
    return out;
  } catch (err) {
    await close();
    throw err;
  }
}

/** Opens a checked path and makes sure the descriptor is that file; closes it and throws otherwise. */
async function openChecked(what: string, path: string, allowed: readonly string[], flags: number, blockDeviceOk: boolean): Promise<FileHandle> {
  const real = await checkHostPath(what, path, allowed);
  let fh: FileHandle;
  try {
    // O_NONBLOCK: a FIFO named as a disk must not hang the start (it is refused below, as not a file).
    fh = await open(real, flags | constants.O_NOFOLLOW | constants.O_NOCTTY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw pathRefused(what, path, code === 'ENOENT' ? 'does not exist' : code === 'ELOOP' ? 'was replaced by a symlink while it was checked' : `cannot be opened (${code ?? (err as Error).message})`);
  }
  try {
    const opened = await readlink(`/proc/self/fd/${fh.fd}`);
    if (opened !== real) throw pathRefused(what, path, `changed while it was checked (it now is ${opened})`);
    const st = await fh.stat();
    if (!(st.isFile() || (blockDeviceOk && st.isBlockDevice()))) throw pathRefused(what, path, 'is not a regular file');
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

async function openBootFile(what: string, path: string, opts: OpenSpecOptions): Promise<FileHandle> {
  const fh = await openChecked(what, path, opts.allowed, constants.O_RDONLY, false);
  const user = opts.user;
  if (user !== null) {
    const st = await fh.stat();
    const readable = (st.mode & 0o004) !== 0 || (st.uid === user.uid && (st.mode & 0o400) !== 0) || (st.gid === user.gid && (st.mode & 0o040) !== 0);
    if (!readable) {
      await fh.close();
      throw pathRefused(what, path, `is not readable by qemu's user ${user.name} (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); make it readable, e.g. chmod o+r`);
    }
  }
  return fh;
}

/** The disk's file and its backing chain, each checked, opened and given to qemu as an fdset. */
async function openDiskChain(
  what: string,
  path: string,
  format: DiskFormat | undefined,
  opts: OpenSpecOptions,
  childFd: (h: FileHandle) => number,
  named: (k: number, path: string) => void,
): Promise<PassedDisk> {
  const chain: PassedFile[] = [];
  let current: { what: string; path: string; format: DiskFormat | undefined; writable: boolean } | null = { what, path, format, writable: true };
  while (current !== null) {
    if (chain.length >= MAX_CHAIN) throw pathRefused(what, path, `has a backing chain longer than ${MAX_CHAIN} files`);
    const ro = await openChecked(current.what, current.path, opts.allowed, constants.O_RDONLY, true);
    const fds = [childFd(ro)];
    if (current.writable) fds.unshift(childFd(await openChecked(current.what, current.path, opts.allowed, constants.O_RDWR, true)));
    const header = await readQcow2Header(ro).catch((err: unknown) => {
      throw new DroverError('INVALID_SPEC', `The ${current?.what ?? what} file ${current?.path ?? path} cannot be read (${(err as Error).message}).`, false);
    });
    const fileFormat: DiskFormat = current.format ?? (header ? 'qcow2' : 'raw');
    named(chain.length, current.path);
    chain.push({ fds, format: fileFormat });
    if (fileFormat !== 'qcow2' || !header?.backing) break;
    const real = await readlink(`/proc/self/fd/${ro.fd}`);
    const backingPath = resolve(dirname(real), header.backing);
    current = {
      what: `${what} backing file`,
      path: backingPath,
      format: header.backingFormat === 'qcow2' || header.backingFormat === 'raw' ? header.backingFormat : undefined,
      writable: false,
    };
    if (header.backingFormat !== undefined && current.format === undefined) {
      throw pathRefused(current.what, backingPath, `has the format ${header.backingFormat}; drover passes raw and qcow2 files only`);
    }
  }
  return { chain };
}

interface Qcow2Header {
  backing?: string;
  backingFormat?: string;
}

/** null when the file is not qcow2; else its backing file name and format (header extension), if any. */
async function readQcow2Header(fh: FileHandle): Promise<Qcow2Header | null> {
  const head = Buffer.alloc(104);
  const { bytesRead } = await fh.read(head, 0, head.length, 0);
  if (bytesRead < 72 || head.readUInt32BE(0) !== QCOW2_MAGIC) return null;
  const version = head.readUInt32BE(4);
  const backingOffset = Number(head.readBigUInt64BE(8));
  const backingSize = head.readUInt32BE(16);
  const out: Qcow2Header = {};
  if (backingOffset > 0 && backingSize > 0) {
    if (backingSize > 4096) throw new Error('its qcow2 backing file name is too long');
    const name = Buffer.alloc(backingSize);
    await fh.read(name, 0, backingSize, backingOffset);
    out.backing = name.toString('utf8');
  }
  // Header extensions follow the header (72 bytes in version 2, header_length in version 3).
  let offset = version >= 3 && bytesRead >= 104 ? head.readUInt32BE(100) : 72;
  for (let i = 0; i < 64; i++) {
    const ext = Buffer.alloc(8);
    if ((await fh.read(ext, 0, 8, offset)).bytesRead < 8) break;
    const type = ext.readUInt32BE(0);
    const len = ext.readUInt32BE(4);
    if (type === 0) break;
    if (type === BACKING_FORMAT_EXT && len <= 64) {
      const fmt = Buffer.alloc(len);
      await fh.read(fmt, 0, len, offset + 8);
      out.backingFormat = fmt.toString('utf8');
    }
    offset += 8 + Math.ceil(len / 8) * 8;
  }
  return out;
}
