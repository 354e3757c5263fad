/**
 * The Hypervisor boundary implemented with qemu (STYLE.md 1).
 *
 * Overview of responsibilities
 * - start (qemu-start.ts): check and open the spec's host files against the
 *   allow-list, build argv, make tap devices, spawn qemu confined (its own
 *   user, -sandbox, a cgroup) and detached in its own session with its
 *   output in qemu.log, persist handle.json, connect QMP, wait for `running`.
 * - migrate (qemu-migration.ts) over QMP.
 * - watch every managed process (qemu-vm.ts) and report each exit once,
 *   classified as requested / guest-poweroff / crash.
 * - stop (ACPI, then SIGKILL), recover (re-attach after an agent restart),
 *   scan (every qemu on the host), destroy (remove a run dir).
 *
 * Theory of operation
 * qemu is the agent's child only until the agent restarts: it is spawned
 * detached and unref'd so it outlives the agent (CONTRACT.md 6). Everything a
 * new agent needs to find it again is in runRoot/<uuid>/handle.json; a pid is
 * trusted only if its /proc start time and argv still match, so a reused pid
 * is never adopted (or killed).
 *
 * A process that dies before start() resolves is reported by start()'s
 * rejection (START_FAILED with qemu's own error line), not to onExit
 * listeners: the agent sees one outcome per process.
 *
 * A VM adopted from an older agent (a handle.json without a cgroup, a qemu
 * running as root) is recovered as it is; it is confined from its next start.
 */
import type { ChildProcess } from 'node:child_process';
import { UUID_RE } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import { silentLogger, type Logger } from '../../lib/logger.js';
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
import { bridgeTaps, escapeOptValue, tapName } from './build-qemu-args.js';
import { isSameProcess, listQemuProcesses, readCmdline, readStartTime, USER_HZ } from './proc.js';
import { argvHasBalloon, readBalloonBytes, readBlockCounters, readTapCounters } from './vm-sample.js';
import { QmpClient } from './qmp-client.js';
import { QemuVm } from './qemu-vm.js';
import { assertRunDirUuid, fileSize, listSavedUuids, readHandle, removeRunDir, runPaths, writeHandle, type RunPaths, type SavedHandle } from './run-dir.js';
import * as snapshots from './qemu-snapshots.js';
import type { DiskSnapshots } from '../../contract/snapshot.js';
import { cancelMigration, migrateVm, outgoingMigration } from './qemu-migration.js';
import type { QemuHypervisorOptions } from './qemu-options.js';
import { startQemu, type StartContext } from './qemu-start.js';
import { VmCgroups } from './vm-cgroup.js';

export type { QemuHypervisorOptions } from './qemu-options.js';

export class QemuHypervisor implements Hypervisor {
  readonly accel: Accel;
  private readonly runRoot: string;
  private readonly qemuBinary: string;
  private readonly ipBinary: string;
  private readonly logger: Logger;
  private readonly vms = new Map<string, QemuVm>();
  /** Pids spawned but not yet tracked: counted as managed by scan() (the start path claims them). */
  private readonly spawning = new Set<number>();
  private readonly starts = new Map<string, Promise<VmHandle>>();
  private readonly listeners = new Set<(exit: VmExit) => void>();
  private readonly cgroups: VmCgroups | null;
  private readonly startContext: StartContext;

  constructor(private readonly opts: QemuHypervisorOptions) {
    this.accel = opts.accel;
    this.runRoot = opts.runRoot;
    this.qemuBinary = opts.qemuBinary ?? 'qemu-system-x86_64';
    this.ipBinary = opts.ipBinary ?? 'ip';
    this.logger = opts.logger ?? silentLogger();
    this.cgroups = opts.cgroups === undefined ? new VmCgroups({ logger: this.logger }) : opts.cgroups;
    this.startContext = {
      opts,
      accel: this.accel,
      qemuBinary: this.qemuBinary,
      ipBinary: this.ipBinary,
      logger: this.logger,
      cgroups: this.cgroups,
      track: (handle, paths, child, logOffset, hasBalloon) => this.track(handle, paths, child, logOffset, hasBalloon),
      adoptUnsaved: (req, paths) => this.adoptUnsaved(req, paths),
      claimPid: (pid) => {
        this.spawning.add(pid);
        return () => void this.spawning.delete(pid);
      },
      emitExit: (exit) => this.emitExit(exit),
    };
  }

  async start(req: StartRequest, hooks?: StartHooks): Promise<VmHandle> {
    const pending = this.starts.get(req.uuid);
    if (pending) return pending;
    const existing = this.vms.get(req.uuid);
    if (existing && !existing.gone) return existing.publicHandle();
    const run = (async () => {
      if (existing) await existing.exited; // a restart racing the old process's exit report
      return startQemu(this.startContext, req, hooks, null);
    })();
    this.starts.set(req.uuid, run);
    try {
      return await run;
    } finally {
      this.starts.delete(req.uuid);
    }
  }

  async startIncoming(req: IncomingRequest): Promise<VmHandle> {
    const pending = this.starts.get(req.uuid);
    if (pending) return pending;
    const existing = this.vms.get(req.uuid);
    if (existing && !existing.gone) return existing.publicHandle();
    const run = (async () => {
      if (existing) await existing.exited;
      return startQemu(this.startContext, req, undefined, req.listenHost);
    })();
    this.starts.set(req.uuid, run);
    try {
      return await run;
    } finally {
      this.starts.delete(req.uuid);
    }
  }

  migrate(uuid: string, uri: string, opts: MigrateOptions): Promise<void> {
    return migrateVm(this.vms.get(uuid), uuid, uri, opts);
  }

  outgoingMigration(uuid: string): Promise<OutgoingMigration> {
    return outgoingMigration(this.vms.get(uuid)?.client);
  }

  cancelMigration(uuid: string): Promise<void> {
    return cancelMigration(this.vms.get(uuid)?.client);
  }

  async stop(uuid: string, opts: StopOptions): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm) {
      // A start in flight is stopped once it has spawned (stop is then honoured, start rejects).
      const pending = this.starts.get(uuid);
      if (!pending) return;
      await pending.catch(() => undefined);
      return this.stop(uuid, opts);
    }
    await vm.stop(opts.timeoutMs, opts.force);
  }

  async recover(uuid: string): Promise<VmHandle | null> {
    const pending = this.starts.get(uuid);
    if (pending) return pending.catch(() => null);
    const existing = this.vms.get(uuid);
    if (existing && !existing.gone) return existing.publicHandle();
    if (!UUID_RE.test(uuid)) return null;
    return this.recoverSaved(uuid);
  }

  /** Re-attaches to the qemu handle.json names, if it is still that process. */
  private async recoverSaved(uuid: string): Promise<VmHandle | null> {
    const paths = runPaths(this.runRoot, uuid);
    const saved = await readHandle(paths);
    if (!saved || saved.uuid !== uuid) return null;
    if (!(await isSameProcess(saved.pid, saved.startTime))) return null;
    const argv = await readCmdline(saved.pid);
    if (!argv?.includes(uuid)) return null;
    await this.distrustHandle(saved);

    const vm = this.track(saved, paths, null, await fileSize(paths.qemuLog), argvHasBalloon(argv));
    try {
      const client = await QmpClient.connect(paths.qmpSocket, {
        timeoutMs: this.opts.recoverTimeoutMs ?? 5000,
        isGone: () => vm.gone,
      });
      vm.attachQmp(client);
      const status = await client.execute('query-status');
      vm.state = status.status === 'inmigrate' ? 'incoming' : status.status === 'running' ? 'running' : 'paused';
    } catch (err) {
      if (vm.gone) {
        await vm.exited;
        return null;
      }
      // Alive but the monitor is busy (another client holds it): still ours, watched through /proc.
      vm.state = 'running';
      this.logger.warn({ uuid, pid: saved.pid, err }, 'recovered qemu without a QMP connection');
    }
    vm.reportExit = true;
    this.logger.info({ uuid, pid: saved.pid }, 'recovered running qemu');
    return vm.publicHandle();
  }

  /**
   * A qemu that runs this VM from this run dir (its argv names the VM's uuid
   * and QMP socket) but that no handle.json records: an agent killed between
   * the spawn and writing the handle left it (found by test/chaos/agent-kills).
   * Its handle is written now and it is recovered like any saved one, so the
   * start adopts it instead of spawning a second qemu on the same disks.
   */
  private async adoptUnsaved(req: StartRequest, paths: RunPaths): Promise<VmHandle | null> {
    const socket = escapeOptValue(paths.qmpSocket);
    const found = (await listQemuProcesses()).find((p) => p.uuid === req.uuid && p.argv.some((a) => a.includes(`path=${socket},`)));
    const startTime = found ? await readStartTime(found.pid) : null;
    if (!found || startTime === null) return null;
    const taps = bridgeTaps(req.uuid, req.spec);
    await writeHandle(paths, {
      uuid: req.uuid,
      name: req.name,
      pid: found.pid,
      startTime,
      startedAt: new Date().toISOString(),
      qmpSocket: paths.qmpSocket,
      ...(req.spec.vnc === 'unix' ? { vnc: paths.vncSocket } : {}),
      serialLog: paths.serialLog,
      serialSocket: paths.serialSocket,
      ...(taps.length > 0 ? { taps: taps.map((t) => t.tap) } : {}),
    });
    this.logger.warn({ uuid: req.uuid, pid: found.pid }, 'adopting a qemu whose start was never saved (the agent died right after spawning it)');
    return this.recoverSaved(req.uuid);
  }

  /**
   * handle.json sits in a run dir qemu's user owns, so a compromised qemu
   * could rewrite it: what the agent later does as root with its contents
   * (delete taps, remove a cgroup) is limited to what this VM's own names
   * can be. The pid was checked against /proc already.
   */
  private async distrustHandle(saved: SavedHandle): Promise<void> {
    if (saved.taps) {
      const own = tapName(saved.uuid, 0).slice(0, -1);
      saved.taps = saved.taps.filter((t) => t.length === own.length + 1 && t.startsWith(own));
    }
    if (saved.cgroup !== undefined && saved.cgroup !== (await this.cgroups?.dirOf(saved.uuid))) delete saved.cgroup;
  }

  listSaved(): Promise<string[]> {
    return listSavedUuids(this.runRoot);
  }

  inspect(uuid: string): VmObservation {
    const vm = this.vms.get(uuid);
    if (!vm || vm.gone) return { state: 'absent' };
    // A VM still starting has a process: it is reported as running so nobody starts a second one.
    const state = vm.state === 'paused' ? 'paused' : vm.state === 'incoming' ? 'incoming' : 'running';
    return { state, handle: vm.publicHandle() };
  }

  async scan(): Promise<DiscoveredVm[]> {
    const managed = new Set([...this.vms.values()].filter((vm) => !vm.gone).map((vm) => vm.pid));
    for (const pid of this.spawning) managed.add(pid);
    return (await listQemuProcesses()).map((p) => ({
      pid: p.pid,
      ...(p.uuid !== undefined ? { uuid: p.uuid } : {}),
      ...(p.name !== undefined ? { name: p.name } : {}),
      argv: p.argv,
      managed: managed.has(p.pid),
    }));
  }

  /**
   * Removes runRoot/<uuid>, with the overlays of image disks in its disks/
   * folder (src/storage/prepare-disks.ts). Disks given by `path` belong to
   * the user and are never removed; rm does not follow symlinks, so nothing
   * outside the folder goes either.
   */
  async destroy(uuid: string): Promise<void> {
    assertRunDirUuid(this.runRoot, uuid);
    const vm = this.vms.get(uuid);
    const saved = await readHandle(runPaths(this.runRoot, uuid));
    if (this.starts.has(uuid) || (vm && !vm.gone) || (saved && (await isSameProcess(saved.pid, saved.startTime)))) {
      throw new DroverError('CONFLICT', `VM ${uuid} is still running; stop it before destroying it.`, true);
    }
    await removeRunDir(this.runRoot, uuid);
    // A cgroup left by a VM whose exit no agent saw (it ended while the agent was away).
    const cgroup = await this.cgroups?.dirOf(uuid);
    if (cgroup) await this.cgroups?.remove(cgroup);
  }

  onExit(listener: (exit: VmExit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  listSnapshots(target: SnapshotTarget): Promise<DiskSnapshots[]> {
    return snapshots.listSnapshots(target.spec, this.snapshotAccess(target.uuid));
  }

  createSnapshot(target: SnapshotTarget, name: string): Promise<void> {
    return snapshots.createSnapshot(target.spec, name, this.snapshotAccess(target.uuid));
  }

  deleteSnapshot(target: SnapshotTarget, name: string): Promise<void> {
    return snapshots.deleteSnapshot(target.spec, name, this.snapshotAccess(target.uuid));
  }

  async rollbackSnapshot(target: SnapshotTarget, name: string): Promise<string[]> {
    if (this.snapshotAccess(target.uuid).kind === 'qmp') {
      throw new DroverError('CONFLICT', `VM ${target.uuid} is running; stop it before rolling back its disks.`, true);
    }
    return snapshots.rollbackSnapshot(target.spec, name, this.opts.qemuImgBinary ?? 'qemu-img');
  }

  /** The running qemu's QMP for a VM this instance runs, else the files (qemu-img). */
  private snapshotAccess(uuid: string): snapshots.SnapshotAccess {
    const vm = this.vms.get(uuid);
    if (this.starts.has(uuid) || (vm && !vm.gone && vm.state === 'starting')) {
      throw new DroverError('CONFLICT', `VM ${uuid} is starting; its disks are changed once it runs.`, true);
    }
    if (vm && !vm.gone) {
      const client = vm.client;
      // Terminal: a VM recovered while its monitor was busy stays without QMP until it restarts.
      if (!client) throw new DroverError('SNAPSHOT_FAILED', `VM ${uuid} runs without a QMP connection (another client held its monitor when this agent adopted it), so its disks cannot be snapshotted until it restarts.`, false);
      return { kind: 'qmp', client };
    }
    return { kind: 'files', qemuImg: this.opts.qemuImgBinary ?? 'qemu-img' };
  }

  async processUsage(uuid: string): Promise<VmProcessUsage | null> {
    const vm = this.vms.get(uuid);
    if (!vm || vm.gone) return null;
    const stat = vm.proc.stat();
    // Gone, a zombie, or (after a missed exit) a reused pid: not this VM's process.
    if (!stat || stat.state === 'Z' || stat.state === 'X' || stat.startTime !== vm.handle.startTime) return null;
    return {
      uuid,
      pid: vm.pid,
      startedAt: vm.handle.startedAt,
      bootedAt: vm.bootedAt,
      cpuSeconds: (stat.utime + stat.stime) / USER_HZ,
      at: Date.now(),
    };
  }

  async sample(uuid: string): Promise<VmSample | null> {
    const usage = await this.processUsage(uuid);
    const vm = this.vms.get(uuid);
    if (!usage || !vm) return null;
    // Over the VM's one QMP connection (qemu takes one client at a time); a
    // VM adopted without it has no block stats or balloon until it restarts.
    const client = vm.client;
    const [rssBytes, disk, net, balloonBytes] = await Promise.all([
      vm.proc.rssBytes(),
      readBlockCounters(client).catch(() => null),
      readTapCounters(vm.handle.taps ?? []),
      vm.hasBalloon ? readBalloonBytes(client).catch(() => null) : null,
    ]);
    if (rssBytes === null) return null; // it ended meanwhile
    return { ...usage, rssBytes, disk, net, balloonBytes };
  }

  async detachAll(): Promise<void> {
    const vms = [...this.vms.values()];
    this.vms.clear();
    await Promise.all(vms.map((vm) => vm.detach()));
  }

  private track(handle: SavedHandle, paths: RunPaths, child: ChildProcess | null, logOffset: number, hasBalloon: boolean): QemuVm {
    const vm = new QemuVm({
      handle,
      paths,
      child,
      logOffset,
      hasBalloon,
      ipBinary: this.ipBinary,
      logger: this.logger,
      onExit: (v, exit) => {
        if (this.vms.get(v.handle.uuid) === v) this.vms.delete(v.handle.uuid);
        if (v.handle.cgroup !== undefined && this.cgroups) void this.cgroups.remove(v.handle.cgroup);
        if (v.reportExit) this.emitExit(exit);
      },
    });
    this.vms.set(handle.uuid, vm);
    return vm;
  }

  private emitExit(exit: VmExit): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(exit);
      } catch (err) {
        this.logger.error({ err, uuid: exit.uuid }, 'onExit listener threw');
      }
    }
  }
}
