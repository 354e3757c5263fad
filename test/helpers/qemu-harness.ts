/**
 * The contract harness for QemuHypervisor: real qemu (TCG), the test guest,
 * a temp run root whose path contains a comma and a space (so every socket
 * and log path exercises qemu's option escaping), and a cleanup that kills
 * every qemu the suite started.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QemuHypervisor, type QemuHypervisorOptions } from '../../src/hypervisor/qemu/qemu-hypervisor.js';
import { isAlive, listQemuProcesses } from '../../src/hypervisor/qemu/proc.js';
import type { ForeignVm, HypervisorHarness } from '../contract/hypervisor.contract.js';
import { ensureGuest, guestSpec, READY_MARKER, waitForSerial } from './guest.js';
import { createMarkerDisk, markerVmSpec } from './disk-marker.js';
import { confinedOptions } from './confined.js';

const execFileAsync = promisify(execFile);

export interface QemuHarness extends HypervisorHarness {
  readonly hv: QemuHypervisor;
  readonly dir: string;
  readonly runRoot: string;
  newInstance(extra?: Partial<QemuHypervisorOptions>): QemuHypervisor;
}

/** SIGKILLs the pids and waits until /proc says they are gone. */
export async function killAndWait(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const alive = await Promise.all(pids.map((p) => isAlive(p)));
    if (!alive.some(Boolean)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function makeQemuHarness(): Promise<QemuHarness> {
  const files = await ensureGuest();
  const dir = await mkdtemp(join(tmpdir(), 'drover-qemu-'));
  const runRoot = join(dir, 'run, x=1');
  const confined = await confinedOptions([dir]);
  const instances: QemuHypervisor[] = [];
  const foreignPids: number[] = [];
  const newInstance = (extra: Partial<QemuHypervisorOptions> = {}): QemuHypervisor => {
    const hv = new QemuHypervisor({ runRoot, accel: 'tcg', ...confined, ...extra });
    instances.push(hv);
    return hv;
  };
  const hv = newInstance();
  const handleFile = (uuid: string): string => join(runRoot, uuid, 'handle.json');
  const exists = (p: string, socket = false): Promise<boolean> =>
    stat(p).then((s) => (socket ? s.isSocket() : true), () => false);

  return {
    hv,
    dir,
    runRoot,
    otherHost: () => newInstance({ runRoot: join(dir, 'other host') }),
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    deadMigrationUri: 'tcp:127.0.0.1:1',
    diskSpec: async (uuid, formats) => {
      const disks = [];
      for (const [i, format] of formats.entries()) {
        const path = join(dir, `${uuid}-disk${i}.${format}`);
        await execFileAsync('qemu-img', ['create', '-q', '-f', format, path, '16M']);
        disks.push({ path });
      }
      return guestSpec(files, 'idle', { disks });
    },
    writerSpec: async (uuid) => {
      const path = join(dir, `${uuid}-marker.raw`);
      await createMarkerDisk(path);
      return guestSpec(files, 'idle', markerVmSpec(files, path));
    },
    timeouts: { boot: 30_000, exit: 5_000 },
    newInstance,
    spec: (_uuid, kind) => guestSpec(files, kind),
    missingKernelSpec: () => {
      const path = join(dir, 'no-such-vmlinuz');
      return { spec: guestSpec(files, 'idle', { boot: { kernel: path } }), path };
    },
    arrangeStartFailure: async () => {
      const kernel = join(dir, 'garbage-kernel');
      await writeFile(kernel, 'this is not a kernel\n');
      return { spec: guestSpec(files, 'idle', { boot: { kernel } }), message: /^qemu: invalid kernel header\.?$/ };
    },
    waitBooted: async (handle) => {
      await waitForSerial(handle.serialLog, READY_MARKER, 30_000);
    },
    controlSocketExists: (handle) => exists(handle.qmpSocket, true),
    runDirExists: (uuid) => exists(join(runRoot, uuid)),
    isAlive,
    killHard: async (handle) => {
      process.kill(handle.pid, 'SIGKILL');
    },
    corruptSavedHandle: async (uuid) => {
      const saved = JSON.parse(await readFile(handleFile(uuid), 'utf8')) as { startTime: number };
      saved.startTime += 1;
      await writeFile(handleFile(uuid), JSON.stringify(saved));
    },
    startForeign: async (): Promise<ForeignVm> => {
      const uuid = randomUUID();
      const name = 'foreign,vm';
      // -S: created paused, so it costs no CPU.
      const child = spawn('qemu-system-x86_64', [
        '-name', 'guest=foreign,,vm', '-uuid', uuid, '-machine', 'pc,accel=tcg', '-m', '32',
        '-nodefaults', '-no-user-config', '-display', 'none', '-S',
      ], { stdio: 'ignore' });
      const pid = child.pid;
      if (pid === undefined) throw new Error('could not spawn the foreign qemu');
      foreignPids.push(pid);
      // Wait until /proc shows qemu's own argv (not node's pre-exec fork).
      const deadline = Date.now() + 5000;
      while (!(await listQemuProcesses()).some((p) => p.pid === pid)) {
        if (Date.now() > deadline) throw new Error('the foreign qemu did not appear in /proc');
        await new Promise((r) => setTimeout(r, 10));
      }
      return { pid, uuid, name, stop: () => killAndWait([pid]) };
    },
    close: async () => {
      await Promise.all(instances.map((i) => i.detachAll()));
      const ours = (await listQemuProcesses()).filter((p) => p.argv.some((a) => a.includes(dir)));
      await killAndWait([...ours.map((p) => p.pid), ...foreignPids]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
