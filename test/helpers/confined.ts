/**
 * The confinement options a test's QemuHypervisor runs with, as an agent's
 * would (docs/security.md): qemu as drover-qemu (scripts/install-deps.sh
 * creates it), and an allow-list of the test's own directories plus the
 * test guest's. A temp dir that holds a run root is made searchable (0711),
 * as the agent makes its state dir, so qemu's user can reach its run dir.
 */
import { chmod } from 'node:fs/promises';
import type { QemuHypervisorOptions } from '../../src/hypervisor/qemu/qemu-hypervisor.js';
import { lookupQemuUser } from '../../src/hypervisor/qemu/qemu-user.js';
import { GUEST_DIR } from './guest.js';

export async function confinedOptions(
  allowed: readonly string[],
  searchable: readonly string[] = allowed,
): Promise<Pick<QemuHypervisorOptions, 'allowedPaths' | 'qemuUser'>> {
  for (const dir of searchable) await chmod(dir, 0o711);
  return { allowedPaths: [...allowed, GUEST_DIR], qemuUser: await lookupQemuUser('drover-qemu') };
}
