/**
 * Chooses the accelerator: KVM when it really works here, TCG otherwise.
 *
 * /dev/kvm existing is not enough: under some nested set-ups KVM guests hang
 * or crawl. So `auto` boots a tiny probe guest under KVM first. The probe is
 * a 512-byte boot sector that SeaBIOS loads and that writes 0x31 to the
 * isa-debug-exit port, which makes qemu exit with code (0x31 << 1) | 1 = 99
 * at once. Exit 99 within the time limit means KVM runs guest code; anything
 * else (a hang, an error) means TCG.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DroverError } from '../lib/errors.js';
import type { Accel } from './hypervisor.js';
import { escapeOptValue } from './qemu/build-qemu-args.js';

export type AccelRequest = Accel | 'auto';

export interface ProbeOptions {
  /** qemu-system-x86_64 on PATH by default. */
  qemuBinary?: string;
  /** How long the probe guest may take; 3000 ms by default. */
  timeoutMs?: number;
  /** Where the temp dir with the boot sector goes; the OS temp dir by default. */
  workDir?: string;
  /** The KVM device; /dev/kvm by default (tests point it elsewhere). */
  kvmDevice?: string;
}

export interface AccelChoice {
  accel: Accel;
  /** One sentence for the log: why this accelerator. */
  reason: string;
}

export interface ProbeResult {
  ok: boolean;
  /** One sentence: what happened. */
  reason: string;
  elapsedMs: number;
}

const PROBE_EXIT_CODE = 99;

/** The probe's boot sector: `mov al, 0x31; out 0xf4, al; hlt; hlt`, zeros, then the 0x55AA signature. */
export function probeBootSector(): Buffer {
  const sector = Buffer.alloc(512);
  Buffer.from([0xb0, 0x31, 0xe6, 0xf4, 0xf4]).copy(sector, 0);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

export async function kvmAccessible(device = '/dev/kvm'): Promise<boolean> {
  try {
    await access(device, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export async function probeAccel(requested: AccelRequest, opts: ProbeOptions = {}): Promise<AccelChoice> {
  const device = opts.kvmDevice ?? '/dev/kvm';
  if (requested === 'tcg') return { accel: 'tcg', reason: 'TCG was requested.' };
  if (requested === 'kvm') {
    if (!(await kvmAccessible(device))) {
      throw new DroverError('CONFIG_INVALID', `KVM was requested, but ${device} is missing or not accessible; use --accel tcg or auto.`, false);
    }
    return { accel: 'kvm', reason: 'KVM was requested.' };
  }
  if (!(await kvmAccessible(device))) {
    return { accel: 'tcg', reason: `${device} is missing or not accessible; using TCG.` };
  }
  const probe = await runAccelProbe('kvm', opts);
  return probe.ok
    ? { accel: 'kvm', reason: `The KVM probe guest ran in ${probe.elapsedMs} ms; using KVM.` }
    : { accel: 'tcg', reason: `${probe.reason.replace(/\.$/, '')}; using TCG.` };
}

/**
 * Boots the probe guest under `accel` and says whether it exited as designed.
 * Under TCG it must always succeed: that proves the probe itself works.
 */
export async function runAccelProbe(accel: Accel, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
  const label = accel.toUpperCase();
  const dir = await mkdtemp(join(opts.workDir ?? tmpdir(), 'drover-accel-probe-'));
  const began = Date.now();
  try {
    const image = join(dir, 'probe.img');
    await writeFile(image, probeBootSector());
    const argv = [
      '-accel', accel,
      '-nodefaults',
      '-no-user-config',
      '-display', 'none',
      '-m', '16',
      '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
      '-drive', `file=${escapeOptValue(image)},format=raw,if=ide`,
    ];
    // Resolves only once the process is gone, also after a timeout's kill: the probe leaves nothing behind.
    const outcome = await new Promise<{ code: number | null; error?: Error; timedOut: boolean }>((resolve) => {
      let timedOut = false;
      const child = spawn(qemu, argv, { stdio: 'ignore' });
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.once('error', (error) => {
        clearTimeout(timer);
        resolve({ code: null, error, timedOut: false });
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, timedOut });
      });
    });
    const elapsedMs = Date.now() - began;
    if (outcome.timedOut) {
      return { ok: false, reason: `${label} probe guest did not finish within ${timeoutMs} ms.`, elapsedMs };
    }
    if (outcome.error) {
      return { ok: false, reason: `The ${label} probe could not run ${qemu}: ${outcome.error.message}.`, elapsedMs };
    }
    if (outcome.code !== PROBE_EXIT_CODE) {
      return { ok: false, reason: `${label} probe guest exited with code ${outcome.code} instead of ${PROBE_EXIT_CODE}.`, elapsedMs };
    }
    return { ok: true, reason: `${label} probe guest finished in ${elapsedMs} ms.`, elapsedMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
