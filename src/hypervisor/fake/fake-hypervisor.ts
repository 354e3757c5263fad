/**
 * An in-memory Hypervisor for agent tests (STYLE.md 9). It passes the same
 * contract suite as QemuHypervisor (test/contract/hypervisor.contract.ts),
 * so what the agent relies on cannot drift between the two.
 *
 * Host state (processes, saved handles, guest behaviour) lives in a shared
 * FakeWorld, so a VM outlives the instance that started it, as qemu outlives
 * the agent. Tests steer it with the world's controls: crash(uuid),
 * guestPowerOff(uuid), failNextStart(message), startDelayMs.
 */
import { UUID_RE, type VmSpec } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import type {
  Accel,
  DiscoveredVm,
  Hypervisor,
  IncomingRequest,
  MigrateOptions,
  OutgoingMigration,
  SnapshotTarget,
  StartHooks,
  StartRequest,
  StopOptions,
  VmExit,
  VmHandle,
  VmObservation,
  VmProcessUsage,
  VmSample,
} from '../hypervisor.js';
import { imageDiskError } from '../qemu/build-qemu-args.js';
import { classifyExit } from '../qemu/classify-exit.js';
import { FakeWorld, fakeCpuSeconds, fakeDiskCounters, fakeMigrationListeners, type FakeProcess, type FakeProcessEnd } from './fake-world.js';
import { fakeCreateSnapshot, fakeDeleteSnapshot, fakeListSnapshots, fakeRollbackSnapshot } from './fake-snapshots.js';
import type { DiskSnapshots } from '../../contract/snapshot.js';

export interface FakeHypervisorOptions {
  /** The shared host; a new one by default. */
  world?: FakeWorld;
  /** Only shapes the paths in handles; nothing is written. "/run/drover-fake" by default. */
  runRoot?: string;
  accel?: Accel;
}

interface Watched {
  proc: FakeProcess;
  handle: VmHandle;
  stopRequested: boolean;
  forced: boolean;
  /** False until start() resolves: an exit before then is reported by start's rejection. */
  reportExit: boolean;
  killedAfterMs?: number;
  exited: Promise<VmExit>;
  resolveExited(exit: VmExit): void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class FakeHypervisor implements Hypervisor {
  readonly accel: Accel;
  readonly world: FakeWorld;
  private readonly runRoot: string;
  private readonly vms = new Map<string, Watched>();
  private readonly starts = new Map<string, Promise<VmHandle>>();
  private readonly listeners = new Set<(exit: VmExit) => void>();

  constructor(opts: FakeHypervisorOptions = {}) {
    this.world = opts.world ?? new FakeWorld();
    this.runRoot = opts.runRoot ?? '/run/drover-fake';
    this.accel = opts.accel ?? 'tcg';
  }

  /** Control (shortcut for world.crash): VM `uuid`'s qemu is killed from outside. */
  crash(uuid: string, signal: NodeJS.Signals = 'SIGKILL'): void {
    this.world.crash(uuid, signal);
  }

  /** Control (shortcut for world.guestPowerOff): VM `uuid`'s guest powers itself off. */
  guestPowerOff(uuid: string): void {
    this.world.guestPowerOff(uuid);
  }

  /** Control (shortcut for world.failNextStart): the next start fails with START_FAILED and this message. */
  failNextStart(message: string): void {
    this.world.failNextStart(message);
  }

  /** Control (shortcut for world.startDelayMs): how long a start takes after onSpawned. */
  get startDelayMs(): number {
    return this.world.startDelayMs;
  }

  set startDelayMs(ms: number) {
    this.world.startDelayMs = ms;
  }

  async start(req: StartRequest, hooks?: StartHooks): Promise<VmHandle> {
    const pending = this.starts.get(req.uuid);
    if (pending) return pending;
    const existing = this.vms.get(req.uuid);
    if (existing?.proc.alive) return { ...existing.handle };
    const run = this.startProcess(req, hooks);
    this.starts.set(req.uuid, run);
    try {
      return await run;
    } finally {
      this.starts.delete(req.uuid);
    }
  }

  async startIncoming(req: IncomingRequest): Promise<VmHandle> {
    const existing = this.vms.get(req.uuid);
    if (existing?.proc.alive) return { ...existing.handle };
    if (!UUID_RE.test(req.uuid)) throw new DroverError('USAGE', `Refusing to start ${JSON.stringify(req.uuid)}: a VM needs a lower-case UUID.`);
    this.checkFiles(req.spec);
    const proc = this.world.spawn(['qemu-system-x86_64', '-name', `guest=${req.name},debug-threads=on`, '-uuid', req.uuid, '-incoming', 'defer'], { uuid: req.uuid, name: req.name });
    proc.state = 'incoming';
    const uri = `fake://${this.world.id}/${req.uuid}`;
    const handle: VmHandle = { ...this.handleFor(req, proc), incomingUri: uri };
    this.world.runDirs.add(req.uuid);
    this.world.saved.set(req.uuid, { ...handle });
    this.watch(proc, handle);
    fakeMigrationListeners.set(uri, { world: this.world, proc });
    return { ...handle };
  }

  async migrate(uuid: string, uri: string, opts: MigrateOptions): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm?.proc.alive) throw new DroverError('MIGRATION_FAILED', `VM ${uuid} is not running on this host.`, false);
    const target = fakeMigrationListeners.get(uri);
    const failure = this.world.takeMigrationFailure();
    if (failure !== undefined || !target?.proc.alive || target.proc.state !== 'incoming') {
      this.world.outgoing.set(uuid, 'failed');
      throw new DroverError('MIGRATION_FAILED', failure ?? `The migration failed: nothing waits for it at ${uri}.`, false);
    }
    const total = 96 * 1024 * 1024;
    opts.onProgress?.({ transferred: total / 2, remaining: total / 2, total });
    await sleep(1);
    opts.onProgress?.({ transferred: total, remaining: 0, total });
    fakeMigrationListeners.delete(uri);
    vm.proc.state = 'paused';
    target.proc.state = 'running';
    target.world.serial.set(uuid, [...(this.world.serial.get(uuid) ?? [])]);
    this.world.outgoing.set(uuid, 'completed');
  }

  async outgoingMigration(uuid: string): Promise<OutgoingMigration> {
    return this.vms.get(uuid)?.proc.alive ? (this.world.outgoing.get(uuid) ?? 'none') : 'none';
  }

  async cancelMigration(uuid: string): Promise<void> {
    if (this.world.outgoing.get(uuid) === 'active') this.world.outgoing.set(uuid, 'failed');
  }

  async stop(uuid: string, opts: StopOptions): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm) {
      // Like qemu: a start that has not spawned yet is stopped once it has.
      const pending = this.starts.get(uuid);
      if (!pending) return;
      await pending.catch(() => undefined);
      return this.stop(uuid, opts);
    }
    if (!vm.proc.alive) {
      await vm.exited;
      return;
    }
    vm.forced ||= opts.force && !vm.stopRequested;
    vm.stopRequested = true;
    if (opts.force) {
      this.world.kill(vm.proc.pid);
    } else if (this.world.guestBehaviour(uuid) === 'ignore-acpi') {
      const timer = setTimeout(() => {
        if (!vm.proc.alive) return;
        vm.killedAfterMs = opts.timeoutMs;
        this.world.kill(vm.proc.pid);
      }, opts.timeoutMs);
      void vm.exited.then(() => clearTimeout(timer));
    } else {
      setTimeout(() => this.world.end(vm.proc.pid, { guest: true, signal: null, code: 0 }), this.world.acpiResponseMs);
    }
    await vm.exited;
  }

  async recover(uuid: string): Promise<VmHandle | null> {
    const pending = this.starts.get(uuid);
    if (pending) return pending.catch(() => null);
    const existing = this.vms.get(uuid);
    if (existing?.proc.alive) return { ...existing.handle };
    const saved = this.world.saved.get(uuid);
    if (!saved) return null;
    const proc = this.world.processes.get(saved.pid);
    if (!proc?.alive || proc.startTime !== saved.startTime || !proc.argv.includes(uuid)) return null;
    this.watch(proc, { ...saved });
    return { ...saved };
  }

  async listSaved(): Promise<string[]> {
    return [...this.world.saved.keys()].sort();
  }

  inspect(uuid: string): VmObservation {
    const vm = this.vms.get(uuid);
    if (!vm || !vm.proc.alive) return { state: 'absent' };
    return { state: vm.proc.state, handle: { ...vm.handle } };
  }

  async scan(): Promise<DiscoveredVm[]> {
    return [...this.world.processes.values()]
      .filter((p) => p.alive)
      .map((p) => ({
        pid: p.pid,
        ...(p.uuid !== undefined ? { uuid: p.uuid } : {}),
        ...(p.name !== undefined ? { name: p.name } : {}),
        argv: [...p.argv],
        managed: this.vms.get(p.uuid ?? '')?.proc === p,
      }));
  }

  async destroy(uuid: string): Promise<void> {
    if (!UUID_RE.test(uuid)) {
      throw new DroverError('USAGE', `Refusing to touch ${JSON.stringify(uuid)}: a VM's run directory must be a lower-case UUID directly under ${this.runRoot}.`);
    }
    if (this.starts.has(uuid) || this.world.findLive(uuid)) {
      throw new DroverError('CONFLICT', `VM ${uuid} is still running; stop it before destroying it.`, true);
    }
    this.world.saved.delete(uuid);
    this.world.runDirs.delete(uuid);
    this.world.serial.delete(uuid);
  }

  onExit(listener: (exit: VmExit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async listSnapshots(target: SnapshotTarget): Promise<DiskSnapshots[]> {
    return fakeListSnapshots(this.world, target.spec);
  }

  async createSnapshot(target: SnapshotTarget, name: string): Promise<void> {
    fakeCreateSnapshot(this.world, target.spec, name);
  }

  async deleteSnapshot(target: SnapshotTarget, name: string): Promise<void> {
    fakeDeleteSnapshot(this.world, target.spec, name);
  }

  async rollbackSnapshot(target: SnapshotTarget, name: string): Promise<string[]> {
    if (this.world.findLive(target.uuid)) {
      throw new DroverError('CONFLICT', `VM ${target.uuid} is running; stop it before rolling back its disks.`, true);
    }
    return fakeRollbackSnapshot(this.world, target.spec, name);
  }

  async processUsage(uuid: string): Promise<VmProcessUsage | null> {
    const vm = this.vms.get(uuid);
    if (!vm?.proc.alive) return null;
    const at = Date.now();
    const { pid, startedAt } = vm.handle;
    return { uuid, pid, startedAt, bootedAt: startedAt, cpuSeconds: fakeCpuSeconds(vm.proc.usage, at), at };
  }

  async sample(uuid: string): Promise<VmSample | null> {
    const usage = await this.processUsage(uuid);
    const proc = this.vms.get(uuid)?.proc;
    if (!usage || !proc) return null;
    const u = proc.usage;
    return { ...usage, rssBytes: u.rssBytes, disk: fakeDiskCounters(u, usage.at), net: u.net ? { ...u.net } : null, balloonBytes: null };
  }

  async detachAll(): Promise<void> {
    for (const vm of this.vms.values()) vm.proc.watcher = null;
    this.vms.clear();
  }

  private async startProcess(req: StartRequest, hooks?: StartHooks): Promise<VmHandle> {
    const { uuid, name, spec } = req;
    if (!UUID_RE.test(uuid)) throw new DroverError('USAGE', `Refusing to start ${JSON.stringify(uuid)}: a VM needs a lower-case UUID.`);
    this.checkFiles(spec);
    const proc = this.world.spawn(['qemu-system-x86_64', '-name', `guest=${name},debug-threads=on`, '-uuid', uuid], { uuid, name });
    // Like qemu's tap counters: only bridge NICs have host-side ones.
    if ((spec.nics ?? []).some((n) => n.network !== 'user')) proc.usage.net = { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 };
    const handle = this.handleFor(req, proc);
    this.world.runDirs.add(uuid);
    this.world.saved.set(uuid, { ...handle });
    const vm = this.watch(proc, handle);
    vm.reportExit = false;
    try {
      hooks?.onSpawned?.({ ...handle });
    } catch {
      // a hook's fault is not the VM's
    }
    const failure = this.world.takeStartFailure();
    if (failure !== undefined) {
      this.world.end(proc.pid, { guest: false, signal: null, code: 1 });
      await vm.exited;
      throw new DroverError('START_FAILED', failure, false);
    }
    if (this.world.startDelayMs > 0) await sleep(this.world.startDelayMs);
    if (!proc.alive) {
      const exit = await vm.exited;
      throw new DroverError('START_FAILED', vm.stopRequested ? 'The VM was stopped while it was starting.' : exit.detail, false);
    }
    if (spec.vnc === 'tcp') handle.vnc = '127.0.0.1:5900';
    this.world.saved.set(uuid, { ...handle });
    this.world.serial.set(uuid, ['DROVER-GUEST-READY']);
    vm.reportExit = true;
    if (this.world.guestBehaviour(uuid) === 'disk-writer') proc.usage.writingSince = Date.now();
    if (this.world.guestBehaviour(uuid) === 'poweroff') {
      setTimeout(() => this.world.end(proc.pid, { guest: true, signal: null, code: 0 }), this.world.poweroffAfterMs);
    }
    return { ...vm.handle };
  }

  private handleFor(req: StartRequest, proc: FakeProcess): VmHandle {
    const dir = `${this.runRoot}/${req.uuid}`;
    return {
      uuid: req.uuid,
      name: req.name,
      pid: proc.pid,
      startTime: proc.startTime,
      startedAt: new Date().toISOString(),
      qmpSocket: `${dir}/qmp.sock`,
      ...(req.spec.vnc === 'unix' ? { vnc: `${dir}/vnc.sock` } : {}),
      serialLog: `${dir}/serial.log`,
    };
  }

  private checkFiles(spec: VmSpec): void {
    const paths: Array<[string, string]> = [];
    if (spec.boot) {
      paths.push(['kernel', spec.boot.kernel]);
      if (spec.boot.initrd !== undefined) paths.push(['initrd', spec.boot.initrd]);
    }
    for (const [i, disk] of (spec.disks ?? []).entries()) {
      if (disk.rbd !== undefined) continue; // in a Ceph cluster, not a file
      if (disk.path === undefined) throw imageDiskError(i, disk.image ?? '?');
      paths.push([`disk ${i + 1}`, disk.path]);
    }
    for (const [what, path] of paths) {
      if (!this.world.fileExists(path)) {
        throw new DroverError('INVALID_SPEC', `The ${what} file ${path} does not exist.`, false);
      }
    }
  }

  private watch(proc: FakeProcess, handle: VmHandle): Watched {
    let resolveExited: (exit: VmExit) => void = () => undefined;
    const exited = new Promise<VmExit>((resolve) => (resolveExited = resolve));
    const vm: Watched = { proc, handle, stopRequested: false, forced: false, reportExit: true, exited, resolveExited };
    this.vms.set(handle.uuid, vm);
    proc.watcher = (end) => this.onProcessEnd(vm, end);
    return vm;
  }

  private onProcessEnd(vm: Watched, end: FakeProcessEnd): void {
    const uuid = vm.handle.uuid;
    if (this.vms.get(uuid) === vm) this.vms.delete(uuid);
    if (this.world.saved.get(uuid)?.pid === vm.proc.pid) this.world.saved.delete(uuid);
    const exit: VmExit = { uuid, at: new Date(), ...classify(vm, end) };
    vm.resolveExited(exit);
    if (!vm.reportExit) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(exit);
      } catch {
        // a listener's fault is not the VM's
      }
    }
  }
}

/** Classified by the same rules as QemuHypervisor's, so their words match. */
function classify(vm: Watched, end: FakeProcessEnd): Pick<VmExit, 'reason' | 'detail'> {
  return classifyExit({
    stopRequested: vm.stopRequested,
    forced: vm.forced,
    ...(vm.killedAfterMs !== undefined ? { killedAfterMs: vm.killedAfterMs } : {}),
    ...(end.guest ? { shutdown: { guest: true, reason: 'guest-shutdown' as const } } : {}),
    code: end.code,
    signal: end.signal,
    lastLogLine: '',
  });
}
