/**
 * One serialized worker per VM (STYLE.md 4, after kubelet's pod workers).
 *
 * The worker holds only the newest record it was offered and the last
 * unaccounted exit of the VM's process. Each pass observes the hypervisor,
 * asks planVm for the next step, executes it, and repeats until the plan
 * says `none`. Every record write is a compare-and-swap; a lost race re-reads
 * the record and re-plans. Retryable failures back off per VM (500 ms
 * doubling to 30 s); terminal ones end in ERROR and are not retried.
 */
import { appendLog } from '../contract/vm-record.js';
import { errorMessage, isTerminal, oneSentence } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor, VmExit, VmHandle } from '../hypervisor/hypervisor.js';
import { rawObject, type JsonObject, type StoredVm, type VmRepository } from '../store/vm-repository.js';
import type { CrashTracker } from './crash-tracker.js';
import type { EventReporter } from './event-reporter.js';
import { failoverStorageError, planVm, type PlanLimits, type RecordPatch, type Step } from './plan-vm.js';

export interface WorkerDeps {
  host: string;
  hypervisor: Hypervisor;
  repo: VmRepository;
  reporter: EventReporter;
  crashes: CrashTracker;
  limits: () => PlanLimits;
  logger: Logger;
  now: () => Date;
  /** Path prefixes of storage all hosts share (config shared_storage). */
  sharedStorage: () => readonly string[];
  /** Throws a retryable error when this host may not start VMs now (its lease is not fresh). */
  assertMayStart: () => void;
}

/** Guards against a plan that never settles (a bug): at most this many steps per pass. */
const MAX_STEPS_PER_PASS = 25;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;

export class VmWorker {
  /** undefined: not known yet; null: the record is deleted. */
  private latest: StoredVm | null | undefined = undefined;
  private latestRevision = -1n;
  private exit: VmExit | null = null;
  private busy = false;
  private dirty = false;
  private closed = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private idleWaiters: Array<() => void> = [];
  private readonly log: Logger;

  constructor(
    readonly uuid: string,
    private readonly deps: WorkerDeps,
  ) {
    this.log = deps.logger.child({ vm: uuid });
  }

  get record(): StoredVm | null | undefined {
    return this.latest;
  }

  /** Offers a newer desired state; an older revision than the one held is dropped. */
  offer(vm: StoredVm | null, revision: string): void {
    const rev = BigInt(revision);
    if (rev < this.latestRevision) return;
    this.latestRevision = rev;
    this.latest = vm;
    this.kick();
  }

  /** The hypervisor saw the VM's process end. */
  exited(exit: VmExit): void {
    this.exit = exit;
    this.kick();
  }

  /** Wakes the worker; a pass in progress will run again afterwards. */
  kick(): void {
    if (this.closed) return;
    this.dirty = true;
    if (!this.busy) void this.run();
  }

  /** Resolves once the worker has nothing left to do (for shutdown and tests). */
  whenIdle(): Promise<void> {
    if (!this.busy && !this.dirty) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private async run(): Promise<void> {
    this.busy = true;
    try {
      while (this.dirty && !this.closed) {
        this.dirty = false;
        try {
          if (this.latest === undefined) await this.reload();
          await this.pass();
          this.failures = 0;
        } catch (err) {
          this.scheduleRetry(err);
        }
      }
    } finally {
      this.busy = false;
      if (!this.dirty) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private scheduleRetry(err: unknown): void {
    this.failures++;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1));
    this.log.warn({ err: errorMessage(err), retryInMs: delay }, 'reconcile failed; will retry');
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.kick();
    }, delay);
    this.retryTimer.unref();
  }

  private async reload(): Promise<void> {
    const vm = await this.deps.repo.get(this.uuid);
    this.latest = vm;
    if (vm) this.latestRevision = BigInt(vm.modRevision);
  }

  private async pass(): Promise<void> {
    for (let i = 0; i < MAX_STEPS_PER_PASS && !this.closed; i++) {
      const observed = this.deps.hypervisor.inspect(this.uuid);
      const exit = this.exit;
      const step = planVm({
        host: this.deps.host,
        vm: this.latest ?? null,
        observed,
        exit,
        recentExits: this.deps.crashes.recent(this.uuid),
        limits: this.deps.limits(),
      });
      if (step.kind === 'none') {
        if (observed.state === 'absent' && this.exit === exit) this.exit = null;
        return;
      }
      this.log.debug({ step: step.kind }, 'reconcile step');
      await this.execute(step);
      if (observed.state === 'absent' && this.exit === exit) this.exit = null;
    }
    this.log.error('reconcile did not settle; giving up this pass');
  }

  private async execute(step: Exclude<Step, { kind: 'none' }>): Promise<void> {
    switch (step.kind) {
      case 'write':
        if (await this.write(step.patch, step.log) && step.event) await this.deps.reporter.report({ ...step.event, vm: this.uuid });
        return;
      case 'start':
        return this.start(step);
      case 'stop':
        await this.deps.hypervisor.stop(this.uuid, { timeoutMs: step.timeoutMs, force: step.force });
        return;
      case 'destroy':
        return this.destroy();
    }
  }

  /**
   * Writes the patch onto the newest record with compare-and-swap. On a lost
   * race it re-reads the record and returns false, so the pass re-plans.
   */
  private async write(patch: RecordPatch, logText: string, runtime?: VmHandle, base = this.latest): Promise<StoredVm | null> {
    const current = base;
    if (!current) return null;
    const obj: JsonObject = rawObject(current.raw) ?? { uuid: this.uuid, raw: current.raw };
    obj.status = patch.status;
    if (patch.error !== undefined) obj.error = patch.error;
    if (patch.runtime === null) delete obj.runtime;
    if (patch.force_stop === null) delete obj.force_stop;
    if (runtime) {
      obj.runtime = {
        ...(typeof obj.runtime === 'object' && obj.runtime !== null ? (obj.runtime as JsonObject) : {}),
        pid: runtime.pid,
        started_at: runtime.startedAt,
        serial_log: runtime.serialLog,
        ...(runtime.vnc ? { vnc: runtime.vnc } : {}),
      };
    }
    const log = Array.isArray(obj.log) ? obj.log.filter((l): l is string => typeof l === 'string') : [];
    obj.log = appendLog(log, logText, this.deps.now());
    const written = await this.deps.repo.replaceAndGet(current, obj);
    if (!written) {
      this.log.debug('record changed under us; re-reading');
      await this.reload();
      return null;
    }
    if (BigInt(written.modRevision) > this.latestRevision) {
      this.latest = written;
      this.latestRevision = BigInt(written.modRevision);
    }
    return written;
  }

  private async start(step: Extract<Step, { kind: 'start' }>): Promise<void> {
    const vm = this.latest;
    if (!vm?.parsed.ok) return;
    const { name, spec } = vm.parsed.value;
    if (step.cause === 'crash' || step.cause === 'poweroff' || step.cause === 'missing') this.deps.crashes.record(this.uuid);
    if (step.event) await this.deps.reporter.report({ ...step.event, vm: this.uuid });
    if (step.delayMs > 0) await new Promise((r) => setTimeout(r, step.delayMs));
    if (this.closed) return;

    // Fencing layer 2: the start is claimed with a compare-and-swap on the
    // record's revision BEFORE qemu is spawned. If the scheduler moved the VM
    // to another host meanwhile (failover), the claim loses and nothing runs
    // here. The agent also refuses to start while its own lease is not fresh.
    const storageError = failoverStorageError(vm.parsed.value, this.deps.sharedStorage());
    if (storageError) {
      if (await this.write({ status: 'ERROR', error: storageError, runtime: null }, `not started: ${storageError}`, undefined, vm)) {
        await this.deps.reporter.report({ level: 'error', event: 'vm.error', vm: this.uuid, message: `VM ${name}: ${storageError}` });
      }
      return;
    }
    this.deps.assertMayStart();
    // On the record this start was planned from, not a newer one that came in meanwhile.
    const starting = await this.write({ status: 'STARTING', error: '' }, `starting on ${this.deps.host}`, undefined, vm);
    if (!starting) return;
    let handle: VmHandle;
    try {
      handle = await this.deps.hypervisor.start({ uuid: this.uuid, name, spec });
    } catch (err) {
      if (!isTerminal(err)) throw err;
      const error = oneSentence(errorMessage(err));
      if (await this.write({ status: 'ERROR', error, runtime: null }, `start failed: ${error}`, undefined, starting)) {
        await this.deps.reporter.report({ level: 'error', event: 'vm.error', vm: this.uuid, message: `VM ${name} failed to start on ${this.deps.host}: ${error}`, email: step.cause !== 'request' });
      }
      return;
    }
    // RUNNING is written on top of our own STARTING write (compare-and-swap on
    // its revision): if someone changed the record meanwhile, the write loses,
    // their change stands, and the next step re-plans from it.
    const how = step.cause === 'request' ? 'started' : 'restarted';
    if (await this.write({ status: 'RUNNING', error: '' }, `${how} on ${this.deps.host} (pid ${handle.pid})`, handle, starting)) {
      await this.deps.reporter.report({
        level: 'info',
        event: step.cause === 'request' ? 'vm.started' : 'vm.restarted',
        vm: this.uuid,
        message: `VM ${name} ${how} on ${this.deps.host} as pid ${handle.pid}.`,
      });
    }
  }

  private async destroy(): Promise<void> {
    const vm = this.latest;
    if (!vm) return;
    await this.deps.hypervisor.destroy(this.uuid);
    if (!(await this.deps.repo.deleteIf(vm))) {
      await this.reload();
      return;
    }
    this.latest = null;
    this.deps.crashes.forget(this.uuid);
    const name = vm.parsed.ok ? vm.parsed.value.name : this.uuid;
    await this.deps.reporter.report({ level: 'info', event: 'vm.deleted', vm: this.uuid, message: `VM ${name} was deleted from ${this.deps.host}.` });
  }
}
