/**
 * The smallest thing qemu will run: a 512-byte raw disk whose boot sector is
 * `cli; hlt; jmp $-1` (`FA F4 EB FD`, `55 AA` at 510). Under TCG a halted
 * vCPU costs next to nothing, so many such VMs fit on a small machine. Each
 * VM needs its own copy (qemu write-locks its disk).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

function bootSector(): Buffer {
  const b = Buffer.alloc(512);
  Buffer.from([0xfa, 0xf4, 0xeb, 0xfd]).copy(b, 0);
  b[510] = 0x55;
  b[511] = 0xaa;
  return b;
}

/** Writes `dir/<uuid>.raw` holding the halting boot sector; returns its path. */
export async function makeHaltDisk(dir: string, uuid: string): Promise<string> {
  const path = join(dir, `${uuid}.raw`);
  await writeFile(path, bootSector());
  return path;
}
