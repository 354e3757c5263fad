/**
 * The file checks a start makes before spawning qemu: every kernel, initrd
 * and disk path must exist and be a file (a block device, for a disk), and
 * each disk's format is read from its first bytes when the spec gives none.
 *
 * Failing here is terminal (INVALID_SPEC) and names the path, which is a
 * clearer sentence than qemu's own and costs no process.
 */
import { open, stat } from 'node:fs/promises';
import type { VmSpec } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import { imageDiskError, type DiskFormat } from './build-qemu-args.js';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"

/** Checks the spec's files and returns the detected format of each disk (index-aligned with spec.disks). */
export async function checkSpecFiles(spec: VmSpec): Promise<Array<DiskFormat | undefined>> {
  if (spec.boot) {
    await checkFile('kernel', spec.boot.kernel, false);
    if (spec.boot.initrd !== undefined) await checkFile('initrd', spec.boot.initrd, false);
  }
  const formats: Array<DiskFormat | undefined> = [];
  for (const [i, disk] of (spec.disks ?? []).entries()) {
    if (disk.rbd !== undefined) {
      formats.push(disk.format ?? 'raw'); // in the Ceph cluster: qemu's rbd driver says whether it exists
      continue;
    }
    if (disk.path === undefined) throw imageDiskError(i, disk.image ?? '?');
    await checkFile(`disk ${i + 1}`, disk.path, true);
    try {
      formats.push(disk.format ?? (await detectDiskFormat(disk.path)));
    } catch (err) {
      throw new DroverError('INVALID_SPEC', `The disk ${i + 1} file ${disk.path} cannot be read (${(err as Error).message}).`, false);
    }
  }
  return formats;
}

async function checkFile(what: string, path: string, blockDeviceOk: boolean): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`;
    throw new DroverError('INVALID_SPEC', `The ${what} file ${path} ${why}.`, false);
  }
  if (!(st.isFile() || (blockDeviceOk && st.isBlockDevice()))) {
    throw new DroverError('INVALID_SPEC', `The ${what} path ${path} is not a regular file.`, false);
  }
}

/** qcow2 when the file starts with qcow2's magic, raw otherwise. */
export async function detectDiskFormat(path: string): Promise<DiskFormat> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 4 && head.equals(QCOW2_MAGIC) ? 'qcow2' : 'raw';
  } finally {
    await fh.close();
  }
}
