/**
 * The start path of QemuHypervisor: check and open the spec's host files
 * (host-paths.ts, host-files.ts), build argv, make the run dir (owned by
 * qemu's user) and tap devices, spawn qemu confined (its user, -sandbox,
 * the files as descriptors), put it in its cgroup, persist handle.json,
 * connect QMP and wait for `running` (or, for a migration's target, listen).
 *
 * A refusal before the spawn is terminal (INVALID_SPEC) and one sentence;
 * qemu never sees a refused path. A process that dies before the start
 * resolves is reported by the rejection (START_FAILED with qemu's own error
 * line), not to onExit listeners: the agent sees one outcome per process.
 */
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { DroverError, oneSentence } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { Accel, StartHooks, StartRequest, VmExit, VmHandle } from '../hypervisor.js';
import { bridgeTaps, buildQemuArgs } from './build-qemu-args.js';
import { inUserTerms, openSpecFiles } from './host-files.js';
import { resolveAllowedDirs } from './host-paths.js';
import { listQemuProcesses, readStartTime, tapsInUse } from './proc.js';
import type { QemuHypervisorOptions } from './qemu-options.js';
import { listenForMigration } from './qemu-migration.js';
import type { QemuVm } from './qemu-vm.js';
import { QmpClient } from './qmp-client.js';
import { assertRunDirUuid, createRunDir, lastLogMessage, runPaths, writeHandle, type RunPaths, type SavedHandle } from './run-dir.js';
import { spawnQemu } from './spawn-qemu.js';
import { createTaps, deleteTaps } from './tap-devices.js';
import { argvHasBalloon } from './vm-sample.js';
import type { VmCgroups } from './vm-cgroup.js';
import { planVncTcp } from './vnc-tcp.js';

/** qemu errors worth another try: a disk still locked by a dying qemu, memory pressure. */
const TRANSIENT_QEMU_ERROR = /Failed to get .* lock|Cannot allocate memory|Resource temporarily unavailable/i;

/** What the start path needs from its QemuHypervisor. */
export interface StartContext {
  readonly opts: QemuHypervisorOptions;
  readonly accel: Accel;
  readonly qemuBinary: string;
  readonly ipBinary: string;
  readonly logger: Logger;
  readonly cgroups: VmCgroups | null;
  track(handle: SavedHandle, paths: RunPaths, child: ChildProcess | null, logOffset: number, hasBalloon: boolean): QemuVm;
  /** A qemu already running this VM from its run dir that no handle.json records, adopted (or null). */
  adoptUnsaved(req: StartRequest, paths: RunPaths): Promise<VmHandle | null>;
  /** Counts a just-spawned pid as managed until it is tracked (so a foreign scan meanwhile never takes it for a stranger); returns the release. */
  claimPid(pid: number): () => void;
  emitExit(exit: VmExit): void;
}

/** The allowed directories of one VM's start: the configured ones and its own run dir, symlinks resolved. */
async function allowedDirsFor(opts: QemuHypervisorOptions, paths: RunPaths): Promise<string[]> {
  const configured = typeof opts.allowedPaths === 'function' ? await opts.allowedPaths() : opts.allowedPaths;
  return resolveAllowedDirs([...configured, paths.dir]);
}

/** Spawns qemu; with `incomingHost`, waiting for an incoming migration there instead of booting. */
export async function startQemu(ctx: StartContext, req: StartRequest, hooks: StartHooks | undefined, incomingHost: string | null): Promise<VmHandle> {
  const { uuid, name, spec } = req;
  const { opts } = ctx;
  assertRunDirUuid(opts.runRoot, uuid);
  const paths = runPaths(opts.runRoot, uuid);
  const vnc = await planVncTcp(spec, opts.vnc);
  const files = await openSpecFiles(spec, { allowed: await allowedDirsFor(opts, paths), user: opts.qemuUser });
  let argv: string[];
  const taps = bridgeTaps(uuid, spec);
  let child: ChildProcess;
  try {
    argv = buildQemuArgs({
      uuid,
      name,
      spec,
      paths,
      accel: ctx.accel,
      files,
      ...vnc.args,
      ...(opts.ceph !== undefined ? { ceph: opts.ceph } : {}),
    });
    if (incomingHost !== null) argv.push('-incoming', 'defer');
    await createRunDir(paths, opts.qemuUser);
    // Before the old sockets go: a qemu already running this VM from this run dir is adopted, not doubled.
    const orphan = await ctx.adoptUnsaved(req, paths);
    if (orphan) return orphan;
    // A socket file left by a killed qemu would refuse connections until the new qemu replaces it; a
    // serial log from an agent before confinement is root's, which qemu's user could not truncate
    // (qemu truncates it at each start anyway).
    await Promise.all([paths.qmpSocket, paths.vncSocket, paths.serialSocket, paths.serialLog].map((p) => rm(p, { force: true })));
    if (taps.length > 0) await createTaps(ctx.ipBinary, taps, tapsInUse(await listQemuProcesses()), opts.qemuUser);
    try {
      child = await spawnQemu(ctx.qemuBinary, argv, paths.qemuLog, { user: opts.qemuUser, fds: files.handles.map((h) => h.fd) });
    } catch (err) {
      await deleteTaps(ctx.ipBinary, taps.map((t) => t.tap));
      throw err;
    }
  } finally {
    await files.close(); // qemu holds its own copies now
  }
  const pid = child.pid as number;
  const release = ctx.claimPid(pid);
  let cgroup: string | null;
  let startTime: number;
  try {
    cgroup = ctx.cgroups ? await ctx.cgroups.place(uuid, pid, { memoryMib: spec.memory, vcpus: spec.vcpus }) : null;
    // Null only if qemu is already gone; the QMP wait below then fails with qemu's message.
    startTime = (await readStartTime(pid)) ?? 0;
  } catch (err) {
    release();
    throw err;
  }
  const handle: SavedHandle = {
    uuid,
    name,
    pid,
    startTime,
    startedAt: new Date().toISOString(),
    qmpSocket: paths.qmpSocket,
    ...(spec.vnc === 'unix' ? { vnc: paths.vncSocket } : {}),
    serialLog: paths.serialLog,
    serialSocket: paths.serialSocket,
    ...(taps.length > 0 ? { taps: taps.map((t) => t.tap) } : {}),
    ...(cgroup !== null ? { cgroup } : {}),
  };
  const vm = ctx.track(handle, paths, child, 0, argvHasBalloon(argv));
  release();
  try {
    await writeHandle(paths, handle);
    try {
      hooks?.onSpawned?.(vm.publicHandle());
    } catch (err) {
      ctx.logger.error({ err, uuid }, 'onSpawned hook threw');
    }
    const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
    const client = await QmpClient.connect(paths.qmpSocket, { timeoutMs: deadline - Date.now(), isGone: () => vm.gone });
    vm.attachQmp(client);
    if (vnc.password !== undefined) await client.execute('change-vnc-password', { password: vnc.password });
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
    throw await failedStart(vm, paths, err, files.names);
  }
  vm.reportExit = true;
  // It may have died in the last instant; its exit is then reported like any other.
  if (vm.exitInfo) ctx.emitExit(vm.exitInfo);
  ctx.logger.info({ uuid, pid, user: opts.qemuUser?.name ?? 'agent', cgroup }, 'qemu started');
  return vm.publicHandle();
}

/** Turns a start that went wrong after the spawn into one error, making sure no qemu is left behind. */
async function failedStart(vm: QemuVm, paths: RunPaths, err: unknown, names: ReadonlyArray<[string, string]>): Promise<DroverError> {
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
    const line = inUserTerms(await lastLogMessage(paths.qemuLog), names);
    const message = line ? oneSentence(line) : `qemu exited during start-up: ${vm.exitInfo?.detail ?? 'no message'}`;
    return new DroverError('START_FAILED', message, TRANSIENT_QEMU_ERROR.test(line));
  }
  if (err instanceof DroverError) return err;
  return new DroverError('START_FAILED', `qemu could not be started: ${(err as Error).message}.`, true, { cause: err });
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
