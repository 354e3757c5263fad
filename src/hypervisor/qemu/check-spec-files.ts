/**
 * A disk's format from its first bytes, for a spec that gives none (the
 * snapshot code reads it so). The checks a start makes before spawning qemu
 * (the allow-list, the real path, the file type, the backing chain) are in
 * host-paths.ts and host-files.ts, which open the files qemu then gets as
 * descriptors.
 */
import { open } from 'node:fs/promises';
import type { DiskFormat } from './build-qemu-args.js';

const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"

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
