/**
 * A VM's run directory, `runRoot/<uuid>/` (mode 0700): its QMP and VNC
 * sockets, serial console log, qemu's own stderr, and handle.json, the
 * persisted handle a restarted agent recovers from (STYLE.md 2).
 *
 * handle.json holds the VmHandle plus what the hypervisor itself needs after a
 * restart (the tap devices to delete when the VM exits). It is replaced
 * atomically (write a temp file, rename), so a reader never sees half of one.
 *
 * With a confined qemu the run dir belongs to qemu's user (it creates its
 * sockets and serial log there). The agent, root, therefore never follows a
 * symlink in it: its own files are created with O_EXCL (a new random temp
 * name for handle.json, qemu.log removed first) and logs are read with
 * O_NOFOLLOW.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { UUID_RE } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import type { VmHandle } from '../hypervisor.js';

export interface RunPaths {
  dir: string;
  qmpSocket: string;
  vncSocket: string;
  /** The serial console, interactive (its output is also written to serialLog). */
  serialSocket: string;
  serialLog: string;
  qemuLog: string;
  handleFile: string;
}

export function runPaths(runRoot: string, uuid: string): RunPaths {
  const dir = join(runRoot, uuid);
  return {
    dir,
    qmpSocket: join(dir, 'qmp.sock'),
    vncSocket: join(dir, 'vnc.sock'),
    serialSocket: join(dir, 'serial.sock'),
    serialLog: join(dir, 'serial.log'),
    qemuLog: join(dir, 'qemu.log'),
    handleFile: join(dir, 'handle.json'),
  };
}

const savedHandleSchema = z.looseObject({
  uuid: z.string(),
  name: z.string(),
  pid: z.int().positive(),
  startTime: z.int().nonnegative(),
  startedAt: z.string(),
  qmpSocket: z.string(),
  vnc: z.string().optional(),
  serialLog: z.string(),
  serialSocket: z.string().optional(),
  incomingUri: z.string().optional(),
  taps: z.array(z.string()).optional(),
  cgroup: z.string().optional(),
});

/** What handle.json holds. */
export interface SavedHandle extends VmHandle {
  /** Tap devices drover created for this VM, deleted when it exits. */
  taps?: string[];
  /** The VM's cgroup directory (vm-cgroup.ts), removed when it exits; absent for a qemu started without one. */
  cgroup?: string;
}

/** Refuses a uuid that could name anything but a direct child of runRoot. */
export function assertRunDirUuid(runRoot: string, uuid: string): void {
  const dir = resolve(runRoot, uuid);
  if (!UUID_RE.test(uuid) || dirname(dir) !== resolve(runRoot)) {
    throw new DroverError('USAGE', `Refusing to touch ${JSON.stringify(uuid)}: a VM's run directory must be a lower-case UUID directly under ${runRoot}.`);
  }
}

/** Makes the run dir, mode 0700, owned by `owner` (qemu's user) when given. */
export async function createRunDir(paths: RunPaths, owner?: { uid: number; gid: number } | null): Promise<void> {
  await mkdir(dirname(paths.dir), { recursive: true, mode: 0o711 });
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const st = await stat(paths.dir);
  if (!st.isDirectory()) throw new DroverError('START_FAILED', `The run directory ${paths.dir} is not a directory.`, false);
  if (owner) await chown(paths.dir, owner.uid, owner.gid);
  await chmod(paths.dir, 0o700); // mkdir's mode is filtered by the umask and ignored for an existing dir
}

export async function writeHandle(paths: RunPaths, handle: SavedHandle): Promise<void> {
  const tmp = `${paths.handleFile}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(handle, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, paths.handleFile);
}

/** The saved handle, or null when there is none or it is unreadable. */
export async function readHandle(paths: RunPaths): Promise<SavedHandle | null> {
  let raw: string;
  try {
    raw = await readFile(paths.handleFile, 'utf8');
  } catch {
    return null;
  }
  try {
    const parsed = savedHandleSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export async function removeHandle(paths: RunPaths): Promise<void> {
  await rm(paths.handleFile, { force: true });
}

/** Every uuid directory under runRoot that holds a handle.json. */
export async function listSavedUuids(runRoot: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(runRoot);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: string[] = [];
  for (const e of entries.filter((name) => UUID_RE.test(name)).sort()) {
    try {
      if ((await stat(join(runRoot, e, 'handle.json'))).isFile()) out.push(e);
    } catch {
      // no handle: nothing to recover
    }
  }
  return out;
}

/** Removes a VM's run directory; refuses anything but `runRoot/<uuid>`. */
export async function removeRunDir(runRoot: string, uuid: string): Promise<void> {
  assertRunDirUuid(runRoot, uuid);
  await rm(join(runRoot, uuid), { recursive: true, force: true });
}

/** The last non-empty line of a log, looking only at bytes from `fromOffset` on; '' when none. */
export async function lastLogLine(path: string, fromOffset = 0): Promise<string> {
  return (await lastLogLines(path, fromOffset)).at(-1) ?? '';
}

/**
 * qemu's last error message in its log: the last line that starts with the
 * program's name plus the hint lines after it (qemu 7.2 writes a lock
 * refusal as `...: Failed to get "write" lock` and then `Is another process
 * using the image [PATH]?`), joined into one line; '' when the log is empty.
 */
export async function lastLogMessage(path: string, fromOffset = 0): Promise<string> {
  const lines = await lastLogLines(path, fromOffset);
  let first = lines.length - 1;
  for (let i = lines.length - 1; i >= Math.max(0, lines.length - 4); i--) {
    if (/^qemu[\w.-]*:/.test(lines[i] ?? '')) {
      first = i;
      break;
    }
  }
  return lines
    .slice(Math.max(0, first))
    .map((l, i, all) => (i < all.length - 1 && !/[.!?]$/.test(l) ? `${l}.` : l))
    .join(' ');
}

async function lastLogLines(path: string, fromOffset: number): Promise<string[]> {
  const TAIL = 16 * 1024;
  let text: string;
  try {
    const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(fromOffset, size - TAIL, 0);
      const buf = Buffer.alloc(Math.max(0, size - start));
      await fh.read(buf, 0, buf.length, start);
      text = buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return [];
  }
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

export async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
