/**
 * One managed qemu process: its QMP connection, its exit detection and its
 * stop. `QemuHypervisor` keeps one of these per VM it started or recovered.
 *
 * Exit detection has two sources, because the agent is qemu's parent only
 * for processes it spawned itself:
 * - a child of this agent: the child's 'exit' event, with code and signal;
 * - a recovered process (an earlier agent's child): the QMP socket closing,
 *   and as a fallback a /proc poll every 500 ms (a non-child cannot be
 *   waited for).
 * qemu writes SHUTDOWN to QMP before it exits, but the child's 'exit' and
 * the socket's last bytes can arrive in either order, so the exit waits
 * (briefly) for the socket to close before classifying: the SHUTDOWN event,
 * if there was one, has been read by then.
 *
 * Each process ends exactly once: `finish` runs at most once, and a detached
 * VM reports nothing.
 */
import type { ChildProcess } from 'node:child_process';
import { unlink } from 'node:fs/promises';
import type { Logger } from '../../lib/logger.js';
import type { VmExit, VmHandle } from '../hypervisor.js';
import { classifyExit, type ExitFacts } from './classify-exit.js';
import { isSameProcess } from './proc.js';
import { ProcFiles } from './proc-files.js';
import type { QmpClient } from './qmp-client.js';
import type { QmpEventMap } from './qmp-types.js';
import { lastLogLine, removeHandle, type RunPaths, type SavedHandle } from './run-dir.js';
import { deleteTaps } from './tap-devices.js';

const POLL_MS = 500;
const FAST_POLL_MS = 10;
/** How long an exit waits for the QMP socket to close (to read a last SHUTDOWN). */
const QMP_DRAIN_MS = 1000;

/** `incoming`: waiting for (or receiving) a live migration; it runs once that completes. */
export type QemuVmState = 'starting' | 'running' | 'paused' | 'incoming';

export interface QemuVmOptions {
  handle: SavedHandle;
  paths: RunPaths;
  /** Set when this agent spawned the process. */
  child: ChildProcess | null;
  /** Only qemu.log lines after this byte offset describe this agent's watch. */
  logOffset: number;
  ipBinary: string;
  /** The process's argv adds a balloon device (sampled with query-balloon). */
  hasBalloon?: boolean;
  logger: Logger;
  /** Called once when the process is gone (also when `reportExit` is false: the owner decides). */
  onExit(vm: QemuVm, exit: VmExit): void;
}

interface ProcessEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class QemuVm {
  readonly handle: SavedHandle;
  state: QemuVmState = 'starting';
  /**
   * False while start() or recover() is still deciding: an exit before then is
   * reported by that call's result, not to onExit listeners.
   */
  reportExit = false;
  /** ISO time the guest last booted: the process start, then each RESET seen over QMP. */
  bootedAt: string;
  /** Its /proc files, open while it runs (for the agent's process check and stats). */
  readonly proc: ProcFiles;
  private qmp: QmpClient | null = null;
  private end: ProcessEnd | null = null;
  private exit: VmExit | null = null;
  private shutdown: QmpEventMap['SHUTDOWN'] | undefined;
  private stopRequested = false;
  private forced = false;
  private killedAfterMs: number | undefined;
  private stopping: Promise<void> | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private fastPoll = false;
  private detached = false;
  private resolveExited: (exit: VmExit) => void = () => undefined;
  /** Resolves once the process is gone and its exit has been classified. */
  readonly exited: Promise<VmExit>;
  private readonly onChildExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    this.processEnded({ code, signal });
  };

  constructor(private readonly opts: QemuVmOptions) {
    this.handle = opts.handle;
    this.bootedAt = opts.handle.startedAt;
    this.proc = new ProcFiles(opts.handle.pid);
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
    if (opts.child) {
      opts.child.once('exit', this.onChildExit);
      // kill() on a child can emit 'error'; unhandled, it would take the agent down.
      opts.child.on('error', (err) => opts.logger.warn({ uuid: opts.handle.uuid, err }, 'qemu child process error'));
    } else {
      this.schedulePoll();
    }
  }

  get pid(): number {
    return this.handle.pid;
  }

  /** True once the process is known to have exited (the classification may still be pending). */
  get gone(): boolean {
    return this.end !== null;
  }

  /** The classified exit, once the process is gone. */
  get exitInfo(): VmExit | null {
    return this.exit;
  }

  get hasBalloon(): boolean {
    return this.opts.hasBalloon === true;
  }

  get qmpConnected(): boolean {
    return this.qmp !== null && !this.qmp.closed;
  }

  /** A public copy of the handle, without the hypervisor's private fields. */
  publicHandle(): VmHandle {
    const { uuid, name, pid, startTime, startedAt, qmpSocket, vnc, serialLog, serialSocket, incomingUri } = this.handle;
    return {
      uuid,
      name,
      pid,
      startTime,
      startedAt,
      qmpSocket,
      ...(vnc !== undefined ? { vnc } : {}),
      serialLog,
      ...(serialSocket !== undefined ? { serialSocket } : {}),
      ...(incomingUri !== undefined && this.state === 'incoming' ? { incomingUri } : {}),
    };
  }

  attachQmp(client: QmpClient): void {
    this.qmp = client;
    client.on('event', (ev) => {
      switch (ev.event) {
        case 'SHUTDOWN':
          this.shutdown = ev.data;
          break;
        case 'RESET':
          this.bootedAt = new Date().toISOString();
          break;
        case 'STOP':
          if (this.state === 'running') this.state = 'paused';
          break;
        case 'RESUME':
          // Also the end of an incoming migration: the guest now runs here.
          if (this.state === 'paused' || this.state === 'incoming') this.state = 'running';
          break;
        default:
          break;
      }
    });
    client.once('close', () => {
      // A child reports its own exit; a recovered process is checked at once.
      if (!this.opts.child && !this.detached && !this.end) {
        this.fastPoll = true;
        this.schedulePoll(0);
      }
    });
  }

  /** The QMP connection, or null when there is none (a recovered VM whose monitor was busy). */
  get client(): QmpClient | null {
    return this.qmpConnected ? this.qmp : null;
  }

  /**
   * Stops the process: ACPI power-down, up to `timeoutMs` for the guest to
   * act, then SIGKILL; `force` kills at once. Resolves once it is gone. A
   * forced stop during a graceful one escalates.
   */
  async stop(timeoutMs: number, force: boolean): Promise<void> {
    if (this.exit || this.detached) return;
    if (this.gone) {
      // It died on its own before this stop: that exit keeps its own reason.
      await this.exited;
      return;
    }
    this.stopRequested = true;
    // qemu is unref'd so the agent may exit while it runs; a caller waiting
    // for it to stop must keep the event loop alive until it has.
    this.opts.child?.ref();
    if (force) {
      this.forced = this.stopping === null;
      await this.kill();
    } else {
      this.stopping ??= this.stopGracefully(timeoutMs);
      await this.stopping;
    }
    await this.exited;
  }

  private async stopGracefully(timeoutMs: number): Promise<void> {
    const client = this.client;
    if (!client || this.gone) {
      await this.kill();
      return;
    }
    try {
      await client.execute('system_powerdown');
    } catch (err) {
      this.opts.logger.warn({ uuid: this.handle.uuid, err }, 'system_powerdown failed; killing qemu');
      await this.kill();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut && !this.gone) {
      this.killedAfterMs = timeoutMs;
      await this.kill();
    }
  }

  /** SIGKILL, after making sure the pid is still our qemu. */
  async kill(): Promise<void> {
    if (this.gone) return;
    const child = this.opts.child;
    if (child) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return;
    }
    if (await isSameProcess(this.handle.pid, this.handle.startTime)) {
      try {
        process.kill(this.handle.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.fastPoll = true;
    this.schedulePoll(0);
  }

  /** Lets go of the process without touching it: no more monitoring, no exit report. */
  async detach(): Promise<void> {
    this.detached = true;
    this.proc.close();
    this.opts.child?.off('exit', this.onChildExit);
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    await this.qmp?.close();
  }

  private schedulePoll(delayMs?: number): void {
    if (this.detached || this.end) return;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => void this.poll(), delayMs ?? (this.fastPoll ? FAST_POLL_MS : POLL_MS));
    if (!this.stopRequested) this.pollTimer.unref();
  }

  private async poll(): Promise<void> {
    this.pollTimer = null;
    if (this.detached || this.end) return;
    // One pread on the process's open /proc/PID/stat (ProcFiles): cheap enough for every VM twice a second.
    const stat = this.proc.stat();
    if (stat && stat.state !== 'Z' && stat.state !== 'X' && stat.startTime === this.handle.startTime) {
      this.schedulePoll();
    } else {
      this.processEnded({ code: null, signal: null });
    }
  }

  private processEnded(end: ProcessEnd): void {
    if (this.end || this.detached) return;
    this.end = end;
    this.proc.close();
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    void this.finish(end);
  }

  private async finish(end: ProcessEnd): Promise<void> {
    const qmp = this.qmp;
    if (qmp && !qmp.closed) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => qmp.once('close', resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, QMP_DRAIN_MS))),
      ]);
      clearTimeout(timer);
      await qmp.close();
    }
    if (this.detached) return;
    const facts: ExitFacts = {
      stopRequested: this.stopRequested,
      forced: this.forced,
      code: end.code,
      signal: end.signal,
      lastLogLine: await lastLogLine(this.opts.paths.qemuLog, this.opts.logOffset),
      ...(this.killedAfterMs !== undefined ? { killedAfterMs: this.killedAfterMs } : {}),
      ...(this.shutdown ? { shutdown: this.shutdown } : {}),
    };
    const { reason, detail } = classifyExit(facts);
    const exit: VmExit = { uuid: this.handle.uuid, reason, detail, at: new Date() };
    this.exit = exit;
    await deleteTaps(this.opts.ipBinary, this.handle.taps ?? []);
    // The handle now names a dead process; sockets are qemu's to remove, but it cannot after SIGKILL.
    await Promise.all([
      removeHandle(this.opts.paths),
      unlink(this.opts.paths.qmpSocket).catch(() => undefined),
      unlink(this.opts.paths.vncSocket).catch(() => undefined),
      unlink(this.opts.paths.serialSocket).catch(() => undefined),
    ]);
    this.opts.logger.info({ uuid: exit.uuid, pid: this.handle.pid, reason, detail }, 'qemu exited');
    this.resolveExited(exit);
    this.opts.onExit(this, exit);
  }
}
