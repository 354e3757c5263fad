/**
 * The test guest (scripts/build-guest.sh): where it is, how to wait for its
 * serial console, and specs that boot it. Built into build/guest on first use.
 *
 * Guests always run under TCG in tests: KVM guests hang on the CI hosts.
 */
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VmSpec } from '../../src/contract/vm-record.js';

/** The repository root (this file runs from dist/test/helpers/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const GUEST_DIR = join(REPO_ROOT, 'build', 'guest');

export type GuestKind = 'idle' | 'poweroff' | 'ignore-acpi';

export interface GuestFiles {
  kernel: string;
  /** initrd.gz: READY, then a tick a second; powers off on the ACPI button. */
  initrd: string;
  /** Powers itself off about 1 s after READY. */
  initrdPoweroff: string;
  /** Ignores the ACPI power button. */
  initrdIgnoreAcpi: string;
  /** Like initrd, but writes marker records into its virtio disk (test/helpers/disk-marker.ts). */
  initrdDiskMarker: string;
}

export const READY_MARKER = 'DROVER-GUEST-READY';

let building: Promise<GuestFiles> | null = null;

/** The guest's files, building them first when missing. */
export function ensureGuest(): Promise<GuestFiles> {
  building ??= (async () => {
    const files: GuestFiles = {
      kernel: join(GUEST_DIR, 'vmlinuz'),
      initrd: join(GUEST_DIR, 'initrd.gz'),
      initrdPoweroff: join(GUEST_DIR, 'initrd-poweroff.gz'),
      initrdIgnoreAcpi: join(GUEST_DIR, 'initrd-ignore-acpi.gz'),
      initrdDiskMarker: join(GUEST_DIR, 'initrd-disk-marker.gz'),
    };
    // Like make: rebuilt when any file is missing or older than the script.
    const script = await stat(join(REPO_ROOT, 'scripts', 'build-guest.sh'));
    const fresh = await Promise.all(Object.values(files).map((f) => stat(f).then((s) => s.mtimeMs >= script.mtimeMs, () => false)));
    if (fresh.every(Boolean)) return files;
    await new Promise<void>((resolve, reject) => {
      execFile('bash', [join(REPO_ROOT, 'scripts', 'build-guest.sh'), GUEST_DIR], { timeout: 300_000 }, (err, _out, stderr) =>
        err ? reject(new Error(`building the test guest failed: ${stderr || err.message}`)) : resolve(),
      );
    });
    return files;
  })();
  return building;
}

/** A spec that boots the test guest; small (96 MiB, 1 vCPU: the kernel needs more than 64), no NICs, VNC on a unix socket. */
export function guestSpec(files: GuestFiles, kind: GuestKind = 'idle', overrides: Partial<VmSpec> = {}): VmSpec {
  const initrd = kind === 'poweroff' ? files.initrdPoweroff : kind === 'ignore-acpi' ? files.initrdIgnoreAcpi : files.initrd;
  return {
    vcpus: 1,
    memory: 96,
    boot: { kernel: files.kernel, initrd, cmdline: 'console=ttyS0 quiet' },
    vnc: 'unix',
    restart: 'always',
    ...overrides,
  };
}

/** The kernel command line switch that makes any test guest keep one vCPU busy (scripts/build-guest.sh). */
export const BURN_CMDLINE = 'console=ttyS0 quiet drover.burn=1';

/**
 * Polls a serial log until it contains `marker`; resolves with the log. On
 * timeout the error shows the log's last lines.
 */
export async function waitForSerial(path: string, marker: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text: string;
  for (;;) {
    text = await readFile(path, 'utf8').catch(() => '');
    if (text.includes(marker)) return text;
    if (Date.now() >= deadline) {
      const tail = text.split('\n').slice(-5).join('\n');
      throw new Error(`${marker} did not appear in ${path} within ${timeoutMs} ms; last lines:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
