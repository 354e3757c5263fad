/**
 * qemu-img for the internal snapshots of a qcow2 file that no qemu runs
 * (docs/snapshots.md): list (`info -U --output=json`), create, apply and
 * delete (`snapshot -c/-a/-d`). Always argv, never a shell; the format is
 * always given (`-f qcow2`, `--image-opts driver=qcow2`), so qemu-img never
 * probes one. The writing commands take
 * qemu's image lock, so a disk that some qemu still holds is refused rather
 * than changed under it.
 *
 * (src/storage/qemu-img.ts wraps qemu-img for images; these may move there.)
 */
import { execFile } from 'node:child_process';
import type { DiskSnapshot } from '../../contract/snapshot.js';
import { DroverError, oneSentence } from '../../lib/errors.js';
import { escapeOptValue } from './build-qemu-args.js';
import type { QmpSnapshotInfo } from './qmp-types.js';

const QEMU_IMG_TIMEOUT_MS = 120_000;

/** A qcow2 file's snapshots, in qemu's table order. */
export async function listFileSnapshots(path: string, qemuImg = 'qemu-img'): Promise<DiskSnapshot[]> {
  const out = await runQemuImg(qemuImg, ['info', '-U', '--output=json', '-f', 'qcow2', path], path);
  let info: { snapshots?: QmpSnapshotInfo[] };
  try {
    info = JSON.parse(out) as { snapshots?: QmpSnapshotInfo[] };
  } catch {
    throw new DroverError('SNAPSHOT_FAILED', `qemu-img info of ${path} did not print JSON.`, false);
  }
  return toDiskSnapshots(info.snapshots ?? []);
}

export async function createFileSnapshot(path: string, name: string, qemuImg = 'qemu-img'): Promise<void> {
  await runQemuImg(qemuImg, ['snapshot', '--image-opts', '-c', name, qcow2ImageOpts(path)], path);
}

/** Reverts the file to snapshot `name` (the name is never all digits, so qemu cannot take it for an id). */
export async function applyFileSnapshot(path: string, name: string, qemuImg = 'qemu-img'): Promise<void> {
  await runQemuImg(qemuImg, ['snapshot', '--image-opts', '-a', name, qcow2ImageOpts(path)], path);
}

export async function deleteFileSnapshot(path: string, name: string, qemuImg = 'qemu-img'): Promise<void> {
  await runQemuImg(qemuImg, ['snapshot', '--image-opts', '-d', name, qcow2ImageOpts(path)], path);
}

/**
 * `qemu-img snapshot` has no `-f`: the format is given with --image-opts
 * instead, so nothing is probed. The path sits in a key=value list, where a
 * comma must be doubled.
 */
export function qcow2ImageOpts(path: string): string {
  return `driver=qcow2,file.driver=file,file.filename=${escapeOptValue(path)}`;
}

/** qemu's SnapshotInfo list (from qemu-img or QMP) as drover's. */
export function toDiskSnapshots(list: readonly QmpSnapshotInfo[]): DiskSnapshot[] {
  return list.map((s) => ({ name: s.name, id: String(s.id), createdMs: s['date-sec'] * 1000 + Math.floor(s['date-nsec'] / 1e6) }));
}

/**
 * At most this many qemu-img processes at once: every VM's snapshots are
 * re-read together each snapshot_update_interval, and a host with hundreds
 * of stopped VMs should not fork hundreds of processes in one go.
 */
const MAX_PARALLEL = 4;
let running = 0;
const queue: Array<() => void> = [];

async function runQemuImg(binary: string, args: string[], path: string): Promise<string> {
  // A finishing call hands its slot straight to the next in line.
  if (running >= MAX_PARALLEL) await new Promise<void>((resolve) => queue.push(resolve));
  else running++;
  try {
    return await execQemuImg(binary, args, path);
  } finally {
    const next = queue.shift();
    if (next) next();
    else running--;
  }
}

function execQemuImg(binary: string, args: string[], path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: QEMU_IMG_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return reject(new DroverError('SNAPSHOT_FAILED', `${binary} is not installed (it is in Debian's qemu-utils).`, false, { cause: err }));
      reject(new DroverError('SNAPSHOT_FAILED', describeQemuImgError(stderr, path), false, { cause: err }));
    });
  });
}

/** qemu-img's last complaint as one sentence, with the lock failure said plainly. */
export function describeQemuImgError(stderr: string, path: string): string {
  if (/Failed to get .*lock/i.test(stderr)) return `The disk ${path} is in use by another process (qemu-img could not lock it).`;
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^Is another process using/.test(l));
  const last = (lines.at(-1) ?? 'qemu-img failed').replace(/^qemu-img: /, '');
  return oneSentence(`qemu-img failed on ${path}: ${last}`);
}
