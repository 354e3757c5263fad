/**
 * One cgroup v2 directory per qemu (docs/security.md, "Confined qemu"):
 * `<cgroup2 mount>/drover/<uuid>`, with `memory.max` from spec.memory plus
 * qemu's own overhead and `cpu.max` from spec.vcpus, removed once the VM's
 * process is gone.
 *
 * The first use probes: a cgroup2 mount in /proc/self/mounts whose root
 * offers the memory and cpu controllers, and a `drover` directory under it
 * with both enabled in its subtree_control. When any of that fails (no
 * cgroup2, controllers held by a v1 hierarchy, a read-only mount), the agent
 * logs one warning and VMs run without a cgroup; nothing else changes.
 *
 * qemu is moved into its cgroup right after the spawn (Node cannot spawn
 * into one): the few pages it touches before that stay charged to the
 * agent's cgroup, which is harmless.
 */
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../lib/logger.js';

/** MiB allowed above spec.memory for qemu itself (code, device emulation, TCG's translation cache), plus 1/8 of spec.memory. */
export const CGROUP_MEMORY_OVERHEAD_MIB = 256;
/** cpu.max's period in microseconds; the quota is vcpus whole periods. */
const CPU_PERIOD_US = 100_000;

/** The memory.max of a VM, in bytes. */
export function cgroupMemoryMax(memoryMib: number): number {
  return (memoryMib + CGROUP_MEMORY_OVERHEAD_MIB + Math.ceil(memoryMib / 8)) * 1024 * 1024;
}

/** The cpu.max line of a VM: its vCPUs' worth of whole CPUs. */
export function cgroupCpuMax(vcpus: number): string {
  return `${vcpus * CPU_PERIOD_US} ${CPU_PERIOD_US}`;
}

export interface VmCgroupsOptions {
  /**
   * The cgroup2 mount to use; found in /proc/self/mounts when undefined.
   * null turns cgroups off.
   */
  mount?: string | null;
  /** The directory under the mount that holds the VMs' cgroups; "drover" by default. */
  parent?: string;
  logger: Logger;
}

/** The cgroup2 mount point, from a mounts table (/proc/self/mounts); null when there is none. */
export function findCgroup2Mount(mounts: string): string | null {
  for (const line of mounts.split('\n')) {
    const [, mountPoint, type] = line.split(' ');
    if (type === 'cgroup2' && mountPoint) return mountPoint.replace(/\\040/g, ' ');
  }
  return null;
}

export class VmCgroups {
  private ready: Promise<string | null> | null = null;

  constructor(private readonly opts: VmCgroupsOptions) {}

  /** The parent directory when cgroups work here, else null (after one warning). */
  parentDir(): Promise<string | null> {
    this.ready ??= this.probe();
    return this.ready;
  }

  /** The cgroup directory of a VM (whether or not it exists). */
  async dirOf(uuid: string): Promise<string | null> {
    const parent = await this.parentDir();
    return parent === null ? null : join(parent, uuid);
  }

  /**
   * Makes the VM's cgroup with its limits and moves `pid` into it; the
   * directory, or null when cgroups are off or this one failed (logged:
   * the VM runs on without it).
   */
  async place(uuid: string, pid: number, limits: { memoryMib: number; vcpus: number }): Promise<string | null> {
    const dir = await this.dirOf(uuid);
    if (dir === null) return null;
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'memory.max'), String(cgroupMemoryMax(limits.memoryMib)));
      await writeFile(join(dir, 'cpu.max'), cgroupCpuMax(limits.vcpus));
      await writeFile(join(dir, 'cgroup.procs'), String(pid));
      return dir;
    } catch (err) {
      this.opts.logger.warn({ uuid, pid, dir, err }, 'could not put qemu into its cgroup; it runs without limits');
      await rmdir(dir).catch(() => undefined);
      return null;
    }
  }

  /** Removes a VM's cgroup once its processes are gone (the kernel empties it a moment after the exit). */
  async remove(dir: string): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await rmdir(dir);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY') break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    this.opts.logger.warn({ dir }, 'could not remove a VM\'s cgroup');
  }

  private async probe(): Promise<string | null> {
    const warn = (why: string, err?: unknown): null => {
      this.opts.logger.warn({ err }, `cgroups are unavailable (${why}); qemu processes run without memory and CPU limits`);
      return null;
    };
    if (this.opts.mount === null) return null;
    const mount = this.opts.mount ?? findCgroup2Mount(await readFile('/proc/self/mounts', 'utf8').catch(() => ''));
    if (mount === null) return warn('no cgroup2 filesystem is mounted');
    const controllers = (await readFile(join(mount, 'cgroup.controllers'), 'utf8').catch(() => '')).split(/\s+/);
    const missing = ['memory', 'cpu'].filter((c) => !controllers.includes(c));
    if (missing.length > 0) return warn(`the cgroup2 mount ${mount} does not offer the ${missing.join(' and ')} controller${missing.length > 1 ? 's' : ''}`);
    const parent = join(mount, this.opts.parent ?? 'drover');
    try {
      await writeFile(join(mount, 'cgroup.subtree_control'), '+memory +cpu');
      await mkdir(parent, { recursive: true });
      await writeFile(join(parent, 'cgroup.subtree_control'), '+memory +cpu');
    } catch (err) {
      return warn(`the memory and cpu controllers cannot be enabled under ${parent}`, err);
    }
    return parent;
  }
}
