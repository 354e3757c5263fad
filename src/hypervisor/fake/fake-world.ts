/**
 * The host a FakeHypervisor runs on: its processes, its saved handles and
 * its guests' behaviour, in memory.
 *
 * It is shared by every FakeHypervisor built on it, as the real host is
 * shared by successive agents: a VM started by one instance keeps "running"
 * after that instance detaches, and a new instance on the same world can
 * recover it. Tests drive it with the controls below.
 */
import type { DiskSnapshot } from '../../contract/snapshot.js';
import type { VmDiskCounters, VmHandle, VmNetCounters } from '../hypervisor.js';

export type FakeGuestBehaviour =
  /** Boots, honours the ACPI power button. */
  | 'idle'
  /** Boots, then powers itself off after `poweroffAfterMs`. */
  | 'poweroff'
  /** Boots, ignores the ACPI power button. */
  | 'ignore-acpi'
  /** Boots like idle and keeps writing to its disk: 512 bytes every 250 ms, like the disk-marker guest. */
  | 'disk-writer';

/** How a fake process ended, as the hypervisor watching it sees it. */
export interface FakeProcessEnd {
  /** The guest asked for the power-off (qemu's SHUTDOWN guest: true). */
  guest: boolean;
  signal: NodeJS.Signals | null;
  code: number | null;
}

export interface FakeProcess {
  pid: number;
  /** Like /proc's start time: tells a reused pid apart. */
  startTime: number;
  argv: string[];
  uuid?: string;
  name?: string;
  alive: boolean;
  state: 'running' | 'paused' | 'incoming';
  /** Called once when the process ends (the watching hypervisor's hook; null when nobody watches). */
  watcher: ((end: FakeProcessEnd) => void) | null;
  /** Resource use, as /proc, QMP and sysfs would show it (Hypervisor.sample). */
  usage: FakeUsage;
}

/** A fake process's counters; CPU accrues at `cpuLoad` CPU seconds per second from `cpuSince`. */
export interface FakeUsage {
  cpuLoad: number;
  cpuSince: number;
  cpuBase: number;
  rssBytes: number;
  disk: VmDiskCounters;
  /** A `disk-writer` guest: since when it writes 512 bytes every 250 ms (ms since the epoch). */
  writingSince?: number;
  /** Null unless the hypervisor gave the VM a bridge NIC (a tap). */
  net: VmNetCounters | null;
}

/** A fake process's disk counters at `now` (ms): what tests added, plus a disk-writer guest's writes. */
export function fakeDiskCounters(u: FakeUsage, now: number): VmDiskCounters {
  const writes = u.writingSince === undefined ? 0 : Math.floor(Math.max(0, now - u.writingSince) / 250);
  return { ...u.disk, writeBytes: u.disk.writeBytes + writes * 512, writeOps: u.disk.writeOps + writes };
}

/** CPU seconds a fake process has used up to `now` (ms). */
export function fakeCpuSeconds(u: FakeUsage, now: number): number {
  return u.cpuBase + (u.cpuLoad * Math.max(0, now - u.cpuSince)) / 1000;
}

let worldIds = 0;

/**
 * Processes waiting for an incoming migration, by URI, across every world
 * (each world is one host; a migration goes from one to another).
 */
export const fakeMigrationListeners = new Map<string, { world: FakeWorld; proc: FakeProcess }>();

export class FakeWorld {
  /** Names this host in migration URIs (fake://<id>/<uuid>). */
  readonly id = `world${++worldIds}`;
  /** Delay before a start resolves (after onSpawned), like qemu's boot to QMP. */
  startDelayMs = 0;
  /** How long a `poweroff` guest runs before powering itself off. */
  poweroffAfterMs = 20;
  /** How long an `idle` guest takes to act on the ACPI power button. */
  acpiResponseMs = 5;
  /** CPU seconds per second a new process uses (an idle TCG guest's few percent). */
  defaultCpuLoad = 0.02;

  readonly processes = new Map<number, FakeProcess>();
  /** The fake's handle.json files: uuid → saved handle. */
  readonly saved = new Map<string, VmHandle>();
  /** uuids whose run directory exists. */
  readonly runDirs = new Set<string>();
  /** Serial console output per uuid. */
  readonly serial = new Map<string, string[]>();
  private readonly behaviour = new Map<string, FakeGuestBehaviour>();
  private readonly missing = new Set<string>();
  private readonly failures: string[] = [];
  private readonly migrationFailures: string[] = [];
  /** Outgoing migrations by uuid, as qemu would remember them ('none' when absent). */
  readonly outgoing = new Map<string, 'active' | 'completed' | 'failed'>();
  private nextPid = 100_000;
  private ticks = 1_000;
  /** Disk files' formats (qcow2 unless set) and internal snapshots, by path (fake-snapshots.ts). */
  private readonly formats = new Map<string, 'raw' | 'qcow2'>();
  private readonly snapshots = new Map<string, DiskSnapshot[]>();
  private snapshotIds = 0;
  private lastNow = 0;
  /** Every disk rollback, in order: what a test can check a rollback did. */
  readonly rollbacks: Array<{ path: string; name: string }> = [];

  /** A disk file's format: qcow2 unless `setDiskFormat` said otherwise. */
  diskFormat(path: string): 'raw' | 'qcow2' {
    return this.formats.get(path) ?? 'qcow2';
  }

  setDiskFormat(path: string, format: 'raw' | 'qcow2'): void {
    this.formats.set(path, format);
  }

  /** The live list of a disk file's snapshots, in table order. */
  diskSnapshots(path: string): DiskSnapshot[] {
    let list = this.snapshots.get(path);
    if (!list) this.snapshots.set(path, (list = []));
    return list;
  }

  nextSnapshotId(_path: string): number {
    return ++this.snapshotIds;
  }

  /** The clock snapshots are stamped with; strictly increasing, so two snapshots never share a time. */
  now(): number {
    this.lastNow = Math.max(Date.now(), this.lastNow + 1);
    return this.lastNow;
  }

  /** The next start fails after its spawn, with this message (START_FAILED, terminal), like a qemu error. */
  failNextStart(message: string): void {
    this.failures.push(message);
  }

  /** The next outgoing migration from this host fails with this message, the VM staying here. */
  failNextMigration(message: string): void {
    this.migrationFailures.push(message);
  }

  takeMigrationFailure(): string | undefined {
    return this.migrationFailures.shift();
  }

  /** Takes the pending start failure, if any. */
  takeStartFailure(): string | undefined {
    return this.failures.shift();
  }

  /** Makes `path` absent, so a spec naming it is invalid. Every other path exists. */
  markMissing(path: string): void {
    this.missing.add(path);
  }

  fileExists(path: string): boolean {
    return !this.missing.has(path);
  }

  /** How the guest of VM `uuid` behaves from its next start on ('idle' by default). */
  setGuestBehaviour(uuid: string, behaviour: FakeGuestBehaviour): void {
    this.behaviour.set(uuid, behaviour);
  }

  guestBehaviour(uuid: string): FakeGuestBehaviour {
    return this.behaviour.get(uuid) ?? 'idle';
  }

  /** Creates a process; the hypervisor sets `watcher`. */
  spawn(argv: string[], ids: { uuid?: string; name?: string }): FakeProcess {
    const proc: FakeProcess = {
      pid: this.nextPid++,
      startTime: this.ticks++,
      argv,
      ...ids,
      alive: true,
      state: 'running',
      watcher: null,
      usage: {
        cpuLoad: this.defaultCpuLoad,
        cpuSince: Date.now(),
        cpuBase: 0.05, // what booting took
        rssBytes: 40 * 1024 * 1024,
        disk: { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 },
        net: null,
      },
    };
    this.processes.set(proc.pid, proc);
    return proc;
  }

  /** A qemu nobody manages, for scan tests. */
  spawnForeign(ids: { uuid?: string; name?: string } = {}): FakeProcess {
    const argv = ['qemu-system-x86_64'];
    if (ids.uuid) argv.push('-uuid', ids.uuid);
    if (ids.name) argv.push('-name', `guest=${ids.name}`);
    return this.spawn(argv, ids);
  }

  /** Control: VM `uuid`'s guest now uses `load` CPU seconds per second (1.0: one vCPU busy). */
  setCpuLoad(uuid: string, load: number): void {
    const p = this.findLive(uuid);
    if (!p) throw new Error(`FakeWorld.setCpuLoad: no running VM ${uuid}`);
    const now = Date.now();
    p.usage.cpuBase = fakeCpuSeconds(p.usage, now);
    p.usage.cpuSince = now;
    p.usage.cpuLoad = load;
  }

  /** Control: VM `uuid`'s guest does disk I/O (added to its counters). */
  addDiskIo(uuid: string, io: Partial<VmDiskCounters>): void {
    const p = this.findLive(uuid);
    if (!p) throw new Error(`FakeWorld.addDiskIo: no running VM ${uuid}`);
    const d = p.usage.disk;
    d.readBytes += io.readBytes ?? 0;
    d.writeBytes += io.writeBytes ?? 0;
    d.readOps += io.readOps ?? 0;
    d.writeOps += io.writeOps ?? 0;
  }

  /** The live process of VM `uuid`, if any. */
  findLive(uuid: string): FakeProcess | undefined {
    for (const p of this.processes.values()) if (p.alive && p.uuid === uuid) return p;
    return undefined;
  }

  isAlive(pid: number): boolean {
    return this.processes.get(pid)?.alive ?? false;
  }

  /** Ends a process as a signal would (kill -9 by default). */
  kill(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.end(pid, { guest: false, signal, code: null });
  }

  /** Control: VM `uuid`'s qemu dies (SIGKILL from outside). */
  crash(uuid: string, signal: NodeJS.Signals = 'SIGKILL'): void {
    const p = this.findLive(uuid);
    if (!p) throw new Error(`FakeWorld.crash: no running VM ${uuid}`);
    this.kill(p.pid, signal);
  }

  /** Control: VM `uuid`'s guest powers itself off. */
  guestPowerOff(uuid: string): void {
    const p = this.findLive(uuid);
    if (!p) throw new Error(`FakeWorld.guestPowerOff: no running VM ${uuid}`);
    this.end(p.pid, { guest: true, signal: null, code: 0 });
  }

  /** Ends a process once; its watcher hears of it asynchronously, as from a real child. */
  end(pid: number, how: FakeProcessEnd): void {
    const p = this.processes.get(pid);
    if (!p || !p.alive) return;
    p.alive = false;
    this.processes.delete(pid);
    const watcher = p.watcher;
    p.watcher = null;
    if (watcher) setImmediate(() => watcher(how));
  }
}
