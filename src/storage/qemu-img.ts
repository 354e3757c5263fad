/**
 * qemu-img, the one tool drover uses to look at and make disk images: argv
 * arrays for execFile, never a shell, and every failure translated here into
 * one DroverError sentence carrying qemu-img's own message.
 *
 * `info` is what decides an image's format (never its file name).
 * Snapshot commands (`snapshot -c/-l/-a/-d`) belong here too.
 */
import { execFile } from 'node:child_process';
import { z } from 'zod';
import { DroverError, oneSentence } from '../lib/errors.js';

export interface QemuImgOptions {
  /** `qemu-img` on PATH by default. */
  binary?: string;
  /** Per command; 5 min by default (a resize or create is quick; this is a guard). */
  timeoutMs?: number;
}

const infoSchema = z.looseObject({
  format: z.string(),
  'virtual-size': z.number(),
  'actual-size': z.number().optional(),
  'backing-filename': z.string().optional(),
  'full-backing-filename': z.string().optional(),
  'backing-filename-format': z.string().optional(),
  'format-specific': z.looseObject({ type: z.string(), data: z.looseObject({ 'data-file': z.string().optional() }).optional() }).optional(),
});

export interface ImageInfo {
  format: string;
  virtualSize: number;
  /** The backing file a qcow2 names, if any (as written in the image). */
  backingFile?: string;
  backingFormat?: string;
  /** An external data file a qcow2 names, if any. */
  dataFile?: string;
}

export class QemuImg {
  private readonly binary: string;
  private readonly timeoutMs: number;

  constructor(opts: QemuImgOptions = {}) {
    this.binary = opts.binary ?? 'qemu-img';
    this.timeoutMs = opts.timeoutMs ?? 300_000;
  }

  /**
   * `qemu-img info --output=json`. With `shared` (-U) it also reads a file
   * that a running qemu holds locked. `format` skips probing (use it for
   * files drover made itself).
   */
  async info(path: string, opts: { shared?: boolean; format?: string } = {}): Promise<ImageInfo> {
    const argv = ['info', '--output=json'];
    if (opts.shared === true) argv.push('-U');
    if (opts.format !== undefined) argv.push('-f', opts.format);
    argv.push('--', path);
    const out = await this.run(argv, `read ${path}`);
    let parsed;
    try {
      parsed = infoSchema.parse(JSON.parse(out));
    } catch {
      throw new DroverError('IMAGE_ERROR', `qemu-img info gave no usable answer for ${path}.`);
    }
    const backing = parsed['full-backing-filename'] ?? parsed['backing-filename'];
    const dataFile = parsed['format-specific']?.data?.['data-file'];
    return {
      format: parsed.format,
      virtualSize: parsed['virtual-size'],
      ...(backing !== undefined ? { backingFile: backing } : {}),
      ...(parsed['backing-filename-format'] !== undefined ? { backingFormat: parsed['backing-filename-format'] } : {}),
      ...(dataFile !== undefined ? { dataFile } : {}),
    };
  }

  /**
   * A qcow2 overlay at `path` backed by `backing` (of format `backingFormat`,
   * given so qemu never probes it), of `sizeBytes` (the backing file's size
   * when absent).
   */
  async createOverlay(path: string, backing: string, backingFormat: string, sizeBytes?: number): Promise<void> {
    const argv = ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', backingFormat, '--', path];
    if (sizeBytes !== undefined) argv.push(String(sizeBytes));
    await this.run(argv, `create the overlay ${path}`);
  }

  /**
   * Copies internal snapshot `snapshot` of the qcow2 `path` into a new qcow2
   * `dest`: `convert -U -l snapshot.name=...`. -U lets it read a file a
   * running qemu holds; a snapshot's clusters never change under it (the
   * guest's writes go elsewhere), so the copy is the snapshot's point in time.
   */
  async convertSnapshot(path: string, snapshot: string, dest: string): Promise<void> {
    await this.run(['convert', '-U', '-f', 'qcow2', '-l', `snapshot.name=${snapshot}`, '-O', 'qcow2', '--', path, dest], `copy snapshot ${snapshot} of ${path}`);
  }

  /**
   * Copies the qcow2 `path` into a new, self-contained qcow2 `dest`: convert
   * reads through the backing chain, so an image disk's overlay comes out
   * flattened (its image's data included) and needs no backing file.
   */
  async flatten(path: string, dest: string): Promise<void> {
    await this.run(['convert', '-f', 'qcow2', '-O', 'qcow2', '--', path, dest], `copy ${path}`);
  }

  /** Grows (never shrinks) the image at `path` of format `format` to `sizeBytes`. */
  async resize(path: string, format: string, sizeBytes: number): Promise<void> {
    await this.run(['resize', '-q', '-f', format, '--', path, String(sizeBytes)], `resize ${path}`);
  }

  /** Runs qemu-img; resolves with stdout, or rejects with one sentence naming `what` and qemu-img's message. */
  run(argv: readonly string[], what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(this.binary, [...argv], { timeout: this.timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          return reject(new DroverError('SPAWN_FAILED', `qemu-img (${this.binary}) is not installed or not on PATH, so drover cannot ${what}; install qemu-utils.`, false));
        }
        const message = stderr.trim().split('\n').filter((l) => l.trim() !== '').at(-1) ?? err.message;
        reject(new DroverError('IMAGE_ERROR', `qemu-img could not ${what}: ${oneSentence(message.replace(/^qemu-img: /, ''))}`, false));
      });
    });
  }
}
