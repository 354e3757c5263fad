/**
 * Where APEL records go on disk: Vcycle's layout (seed 001), which is a
 * dirq QueueSimple that APEL's ssmsend reads as its outgoing queue.
 *
 *   <state>/apel-archive/YYYYMMDD/HHMMSSmmmrrrrr   always: the site's own copy
 *   <state>/apel-outgoing/YYYYMMDD/HHMMSSmmmrrrrr  also, when gocdb_sitename is set
 *
 * dirq (python-dirq QueueBase) only sees directories named by exactly 8
 * lower-case hex digits and elements named by exactly 14; a date and
 * HHMMSS + 3 digits of milliseconds + 5 random digits are decimal digits of
 * those lengths, and sort by time as dirq's own names do. Both are in UTC.
 *
 * Each file is written whole under a dot-name in its final directory (on the
 * same filesystem even when apel-outgoing is a symlink into ssmsend's spool;
 * the name matches no dirq pattern, so ssmsend never reads a half-written
 * record), flushed, and then hard-linked to its final name: link() fails
 * when the name exists, so a record is never overwritten (dirq's own
 * add_path does the same). The archive and outgoing copies are separate
 * files, so ssmsend removing or locking its copy never touches the archive.
 */
import { randomInt } from 'node:crypto';
import { link, mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

export const APEL_ARCHIVE_DIR = 'apel-archive';
export const APEL_OUTGOING_DIR = 'apel-outgoing';

/** Directories: the agent and its group (ssmsend usually runs as root); records hold owners' names. */
const DIR_MODE = 0o750;
const FILE_MODE = 0o640;
/** Names tried before giving up: a clash needs the same millisecond and the same 5 random digits. */
const NAME_ATTEMPTS = 20;

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/** The day directory's name, YYYYMMDD in UTC (8 digits: a dirq directory name). */
export function apelDayDirName(at: Date): string {
  return `${pad(at.getUTCFullYear(), 4)}${pad(at.getUTCMonth() + 1, 2)}${pad(at.getUTCDate(), 2)}`;
}

/** A record's file name, HHMMSS + milliseconds + 5 random digits in UTC (14 digits: a dirq element name). */
export function apelFileName(at: Date, random: () => number = () => randomInt(100_000)): string {
  return `${pad(at.getUTCHours(), 2)}${pad(at.getUTCMinutes(), 2)}${pad(at.getUTCSeconds(), 2)}${pad(at.getUTCMilliseconds(), 3)}${pad(random(), 5)}`;
}

export interface SpooledRecord {
  archive: string;
  /** Absent when gocdb_sitename is not set. */
  outgoing?: string;
}

/**
 * Writes one message into the archive and, with `outgoing`, into the
 * outgoing queue. Filesystem errors are thrown (the caller logs them).
 */
export async function spoolApelMessage(opts: {
  stateDir: string;
  text: string;
  at: Date;
  outgoing: boolean;
  /** The names' random part (tests make it collide). */
  random?: () => number;
}): Promise<SpooledRecord> {
  const day = apelDayDirName(opts.at);
  const name = (): string => apelFileName(opts.at, opts.random);
  const archive = await placeNewFile(join(opts.stateDir, APEL_ARCHIVE_DIR, day), opts.text, name);
  if (!opts.outgoing) return { archive };
  const outgoing = await placeNewFile(join(opts.stateDir, APEL_OUTGOING_DIR, day), opts.text, name);
  return { archive, outgoing };
}

/** Writes `text` to a new file in `dir` (created as needed) and returns its path. */
async function placeNewFile(dir: string, text: string, name: () => string): Promise<string> {
  const tmp = join(dir, `.drover-${process.pid}-${randomInt(1e9)}.tmp`);
  const fh = await createInDir(dir, tmp);
  try {
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    for (let attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
      const path = join(dir, name());
      try {
        await link(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      await syncDir(dir);
      return path;
    }
    throw new Error(`No free record name in ${dir} after ${NAME_ATTEMPTS} attempts.`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * Creates `path` (exclusively) in `dir`, making `dir` first. ssmsend's dirq
 * purge removes empty day directories, so one may vanish between the mkdir
 * and the open: make it again, as dirq's own writer does.
 */
async function createInDir(dir: string, path: string): Promise<FileHandle> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    try {
      return await open(path, 'wx', FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

/** Makes the new directory entry durable, so a power cut cannot lose a record that was reported written. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
