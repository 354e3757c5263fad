/**
 * The Hypervisor boundary implemented with qemu (STYLE.md 1).
 *
 * Overview of responsibilities
 * - start: check the spec's files, build argv (build-qemu-args.ts), make tap
 *   devices, spawn qemu detached in its own session with its output in
 *   qemu.log, persist handle.json, connect QMP, wait for `running`.
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
 */
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { UUID_RE } from '../../contract/vm-record.js';
import { DroverError, oneSentence } from '../../lib/errors.js';
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
import { bridgeTaps, buildQemuArgs, escapeOptValue, type CephOptions } from './build-qemu-args.js';
import { checkSpecFiles } from './check-spec-files.js';
import { isSameProcess, listQemuProcesses, readCmdline, readStartTime, tapsInUse, USER_HZ } from './proc.js';
import { argvHasBalloon, readBalloonBytes, readBlockCounters, readTapCounters } from './vm-sample.js';
import { QmpClient } from './qmp-client.js';
import { QemuVm } from './qemu-vm.js';
import {
  assertRunDirUuid,
  createRunDir,
  fileSize,
  lastLogMessage,
  listSavedUuids,
  readHandle,
  removeRunDir,
  runPaths,
  writeHandle,
  type RunPaths,
  type SavedHandle,
} from './run-dir.js';
import { spawnQemu } from './spawn-qemu.js';
import * as snapshots from './qemu-snapshots.js';
import type { DiskSnapshots } from '../../contract/snapshot.js';
import { createTaps, deleteTaps } from './tap-devices.js';

export interface QemuHypervisorOptions {
  /** Each VM gets runRoot/<uuid>/ (mode 0700). */
  runRoot: string;
  accel: Accel;
  /** qemu-system-x86_64 (on PATH) by default. */
  qemuBinary?: string;
  /** iproute2's `ip`, for tap devices; `ip` on PATH by default. */
  ipBinary?: string;
  logger?: Logger;
  /** Where `vnc: "tcp"` listens; 127.0.0.1 by default. */
  vncTcpHost?: string;
  /** How long start() waits for QMP to report the VM running; 30 s by default. */
  startTimeoutMs?: number;
  /** How long recover() waits for a QMP greeting; 5 s by default. */
  recoverTimeoutMs?: number;
  /** qemu-img, for the snapshots of VMs that are not running; `qemu-img` on PATH by default. */
  qemuImgBinary?: string;
  /** How qemu reaches Ceph for `rbd` disks (config ceph_conf, ceph_user). */
  ceph?: CephOptions;
}

/** qemu errors worth another try: a disk still locked by a dying qemu, memory pressure. */
const TRANSIENT_QEMU_ERROR = /Failed to get .* lock|Cannot allocate memory|Resource temporarily unavailable/i;

export class QemuHypervisor implements Hypervisor {
  readonly accel: Accel;
  private readonly runRoot: string;
  private readonly qemuBinary: string;
  private readonly ipBinary: string;
  private readonly logger: Logger;
  private readonly vms = new Map<string, QemuVm>();
  private readonly starts = new Map<string, Promise<VmHandle>>();
  private readonly listeners = new Set<(exit: VmExit) => void>();

  constructor(private readonly opts: QemuHypervisorOptions) {
    this.accel = opts.accel;
    this.runRoot = opts.runRoot;
    this.qemuBinary = opts.qemuBinary ?? 'qemu-system-x86_64';
    this.ipBinary = opts.ipBinary ?? 'ip';
    this.logger = opts.logger ?? silentLogger();
  }

  async start(req: StartRequest, hooks?: StartHooks): Promise<VmHandle> {
    const pending = this.starts.get(req.uuid);
    if (pending) return pending;
    const existing = this.vms.get(req.uuid);
    if (existing && !existing.gone) return existing.publicHandle();
    const run = (async () => {
      if (existing) await existing.exited; // a restart racing the old process's exit report
      return this.startProcess(req, hooks, null);
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
      return this.startProcess(req, undefined, req.listenHost);
    })();
    this.starts.set(req.uuid, run);
    try {
      return await run;
    } finally {
      this.starts.delete(req.uuid);
    }
  }

  async migrate(uuid: string, uri: string, opts: MigrateOptions): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm || vm.gone) throw new DroverError('MIGRATION_FAILED', `VM ${uuid} is not running on this host.`, false);
    const client = vm.client;
    if (!client) throw new DroverError('MIGRATION_FAILED', `VM ${uuid} has no QMP connection to drive the migration with.`, true);
    const deadline = Date.now() + opts.timeoutMs;
    const failed = (why: string, cause?: unknown) => new DroverError('MIGRATION_FAILED', oneSentence(why), false, { cause });
    try {
      await client.execute('migrate', { uri });
    } catch (err) {
      throw failed(`qemu refused to start the migration: ${(err as Error).message}`, err);
    }
    for (;;) {
      let info;
      try {
        info = await client.execute('query-migrate');
      } catch (err) {
        throw failed(vm.gone ? 'qemu exited during the migration' : `the migration could not be followed: ${(err as Error).message}`, err);
      }
      if (info.ram) opts.onProgress?.({ transferred: info.ram.transferred, remaining: info.ram.remaining, total: info.ram.total });
      if (info.status === 'completed') return;
      if (info.status === 'failed' || info.status === 'cancelled') {
        throw failed(`the migration ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`);
      }
      if (Date.now() >= deadline) {
        await this.cancelMigration(uuid);
        throw failed(`the migration did not complete within ${Math.round(opts.timeoutMs / 1000)} s and was cancelled`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  async outgoingMigration(uuid: string): Promise<OutgoingMigration> {
    const client = this.vms.get(uuid)?.client;
    if (!client) return 'none';
    const [info, status] = await Promise.all([client.execute('query-migrate'), client.execute('query-status')]);
    if (info.status === 'completed' || status.status === 'postmigrate') return 'completed';
    if (info.status === undefined || info.status === 'none') return 'none';
    if (info.status === 'failed' || info.status === 'cancelled') return 'failed';
    return 'active';
  }

  async cancelMigration(uuid: string): Promise<void> {
    const client = this.vms.get(uuid)?.client;
    if (!client) return;
    await client.execute('migrate_cancel').catch(() => undefined);
    // Cancelling is asynchronous: wait (briefly) until qemu has left the active states.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const info = await client.execute('query-migrate').catch(() => null);
      if (!info || !['setup', 'active', 'cancelling', 'device', 'pre-switchover'].includes(info.status ?? 'none')) return;
      await new Promise((r) => setTimeout(r, 50));
    }
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

  /** Spawns qemu; with `incomingHost`, waiting for an incoming migration there instead of booting. */
  private async startProcess(req: StartRequest, hooks: StartHooks | undefined, incomingHost: string | null): Promise<VmHandle> {
    const { uuid, name, spec } = req;
    assertRunDirUuid(this.runRoot, uuid);
    const detectedFormats = await checkSpecFiles(spec);
    const paths = runPaths(this.runRoot, uuid);
    const argv = buildQemuArgs({
      uuid,
      name,
      spec,
      paths,
      accel: this.accel,
      detectedFormats,
      ...(this.opts.vncTcpHost !== undefined ? { vncTcpHost: this.opts.vncTcpHost } : {}),
      ...(this.opts.ceph !== undefined ? { ceph: this.opts.ceph } : {}),
    });
    if (incomingHost !== null) argv.push('-incoming', 'defer');
    await createRunDir(paths);
    // Before the old sockets go: a qemu already running this VM from this run dir is adopted, not doubled.
    const orphan = await this.adoptUnsaved(req, paths);
    if (orphan) return orphan;
    // A socket file left by a killed qemu would refuse connections until the new qemu replaces it.
    await Promise.all([rm(paths.qmpSocket, { force: true }), rm(paths.vncSocket, { force: true }), rm(paths.serialSocket, { force: true })]);
    const taps = bridgeTaps(uuid, spec);
    if (taps.length > 0) await createTaps(this.ipBinary, taps, tapsInUse(await listQemuProcesses()));

    let child: ChildProcess;
    try {
      child = await spawnQemu(this.qemuBinary, argv, paths.qemuLog);
    } catch (err) {
      await deleteTaps(this.ipBinary, taps.map((t) => t.tap));
      throw err;
    }
    const pid = child.pid as number;
    const handle: SavedHandle = {
      uuid,
      name,
      pid,
      // Null only if qemu is already gone; the QMP wait below then fails with qemu's message.
      startTime: (await readStartTime(pid)) ?? 0,
      startedAt: new Date().toISOString(),
      qmpSocket: paths.qmpSocket,
      ...(spec.vnc === 'unix' ? { vnc: paths.vncSocket } : {}),
      serialLog: paths.serialLog,
      serialSocket: paths.serialSocket,
      ...(taps.length > 0 ? { taps: taps.map((t) => t.tap) } : {}),
    };
    const vm = this.track(handle, paths, child, 0, argvHasBalloon(argv));
    try {
      await writeHandle(paths, handle);
      try {
        hooks?.onSpawned?.(vm.publicHandle());
      } catch (err) {
        this.logger.error({ err, uuid }, 'onSpawned hook threw');
      }
      const deadline = Date.now() + (this.opts.startTimeoutMs ?? 30_000);
      const client = await QmpClient.connect(paths.qmpSocket, { timeoutMs: deadline - Date.now(), isGone: () => vm.gone });
      vm.attachQmp(client);
      if (incomingHost !== null) {
        handle.incomingUri = await listenForMigration(client, incomingHost);
        vm.state = 'incoming';
        await writeHandle(paths, handle);
      } else {
        vm.state = await waitUntilRunning(client, deadline);
      }
      if (spec.vnc === 'tcp') {
        const info = await client.execute('query-vnc');
        if (info.host !== undefined && info.service !== undefined) handle.vnc = `${info.host}:${info.service}`;
        await writeHandle(paths, handle);
      }
    } catch (err) {
      throw await this.failedStart(vm, paths, err);
    }
    vm.reportExit = true;
    // It may have died in the last instant; its exit is then reported like any other.
    if (vm.exitInfo) this.emitExit(vm.exitInfo);
    this.logger.info({ uuid, pid }, 'qemu started');
    return vm.publicHandle();
  }

  /**
   * A qemu that runs this VM from this run dir (its argv names the VM's uuid
   * and QMP socket) but that no handle.json records: an agent killed between
   * the spawn and writing the handle left it (found by test/chaos/agent-kills).
   * Its handle is written now and it is recovered like any saved one, so the
   * next start adopts it instead of spawning a second qemu on the same disks.
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

  /** Turns a start that went wrong after the spawn into one error, making sure no qemu is left behind. */
  private async failedStart(vm: QemuVm, paths: RunPaths, err: unknown): Promise<DroverError> {
    if (!vm.gone && err instanceof DroverError && err.code === 'QMP_CLOSED') {
      // qemu closes its sockets as it exits; the child's exit event can come a moment later.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([vm.exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
    }
    const diedOnItsOwn = vm.gone;
    if (!vm.gone) await vm.kill();
    await vm.exited;
    const stopped = vm.exitInfo?.reason === 'requested';
    if (stopped) return new DroverError('START_FAILED', 'The VM was stopped while it was starting.', false);
    if (diedOnItsOwn) {
      const line = await lastLogMessage(paths.qemuLog);
      const message = line ? oneSentence(line) : `qemu exited during start-up: ${vm.exitInfo?.detail ?? 'no message'}`;
      return new DroverError('START_FAILED', message, TRANSIENT_QEMU_ERROR.test(line));
    }
    if (err instanceof DroverError) return err;
    return new DroverError('START_FAILED', `qemu could not be started: ${(err as Error).message}.`, true, { cause: err });
  }
}

/** Makes a qemu started with `-incoming defer` listen on `host` (any free port); returns the URI to migrate to. */
async function listenForMigration(client: QmpClient, host: string): Promise<string> {
  const h = host.includes(':') ? `[${host}]` : host;
  try {
    await client.execute('migrate-incoming', { uri: `tcp:${h}:0` });
  } catch (err) {
    // A bad migration_address (not an address of this host): no retry can fix it.
    throw new DroverError('START_FAILED', oneSentence(`qemu could not listen for the migration on ${host}: ${(err as Error).message}`), false, { cause: err });
  }
  const info = await client.execute('query-migrate');
  const port = info['socket-address']?.find((a) => a.port !== undefined)?.port;
  if (port === undefined) throw new DroverError('START_FAILED', 'qemu did not say which port it listens on for the migration.', false);
  return `tcp:${h}:${port}`;
}

/** Polls query-status until the VM runs (or is paused); other states mean it will not. */
async function waitUntilRunning(client: QmpClient, deadline: number): Promise<'running' | 'paused'> {
  for (;;) {
    const { status } = await client.execute('query-status');
    if (status === 'running') return 'running';
    if (status === 'paused') return 'paused';
    if (!['prelaunch', 'inmigrate', 'restore-vm', 'finish-migrate'].includes(status)) {
      throw new DroverError('START_FAILED', `qemu reports the VM as ${status} instead of running.`, false);
    }
    if (Date.now() >= deadline) {
      throw new DroverError('TIMEOUT', `qemu did not report the VM running in time (status ${status}).`, true);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}
