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
import { appendLog, type VmSpec } from '../contract/vm-record.js';
import { DroverError, errorMessage, isTerminal, oneSentence } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor, VmExit, VmHandle } from '../hypervisor/hypervisor.js';
import { rawObject, type JsonObject, type StoredVm, type VmRepository } from '../store/vm-repository.js';
import type { CrashTracker } from './crash-tracker.js';
import type { EventReporter } from './event-reporter.js';
import { failoverStorageError, planVm, type EventSpec, type PlanLimits, type RecordPatch, type Step } from './plan-vm.js';
import { runSnapshotStep } from './snapshot-runner.js';
import { objectField, runtimeFields, VmMigration, type MigrationSettings } from './vm-migration.js';


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
  migration: () => MigrationSettings;
  /** Turns image disks into overlay files before a start (src/storage/prepare-disks.ts); the spec as it is when absent. */
  prepareDisks?: (uuid: string, spec: VmSpec) => Promise<VmSpec>;
  /** The spec with image disks as their existing overlay files, making nothing (src/agent/snapshot-disks.ts); the spec as it is when absent. */
  snapshotDisks?: (uuid: string, spec: VmSpec) => Promise<VmSpec>;
}

/** Starts refused for a passing reason are tried this many times (backoff 0.5, 1, 2, 4, 8 s: about 16 s) before ERROR. */
const START_ATTEMPTS = 6;

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
  /** Re-read the disks' snapshots into the record when the VM is next at rest (at first, then every snapshot_update_interval). */
  private snapshotRefreshDue = true;
  private idleWaiters: Array<() => void> = [];
  private readonly log: Logger;
  private readonly migration: VmMigration;

  constructor(
    readonly uuid: string,
    private readonly deps: WorkerDeps,
  ) {
    this.log = deps.logger.child({ vm: uuid });
    this.migration = new VmMigration({
      uuid,
      host: deps.host,
      hypervisor: deps.hypervisor,
      settings: deps.migration,
      latest: () => this.latest,
      closed: () => this.closed,
      assertMayStart: deps.assertMayStart,
      write: (patch, logText, runtime, base, event) => this.write(patch, logText, runtime, base, event),
      writeRecord: (base, logText, mutate, event) => this.writeRecord(base, logText, mutate, event),
      now: deps.now,
      logger: this.log,
    });
  }

  get record(): StoredVm | null | undefined {
    return this.latest;
  }

  /** Offers a newer desired state; an older revision than the one held is dropped. */
  offer(vm: StoredVm | null, revision: string): void {
    const rev = BigInt(revision);
    if (rev < this.latestRevision) return;
    // The echo of this worker's own write while it is still working: the pass
    // already holds it. (A kick here would also undo a retry's backoff.)
    if (rev === this.latestRevision && vm !== null && this.busy) return;
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

  /** Asks for the periodic re-read of the VM's snapshots (docs/snapshots.md). */
  refreshSnapshots(): void {
    this.snapshotRefreshDue = true;
    this.kick();
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
        sharedStorage: this.deps.sharedStorage(),
        snapshotRefreshDue: this.snapshotRefreshDue,
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
        await this.write(step.patch, step.log, undefined, this.latest, step.event);
        return;
      case 'start':
        return this.start(step);
      case 'stop':
        await this.deps.hypervisor.stop(this.uuid, { timeoutMs: step.timeoutMs, force: step.force });
        return;
      case 'destroy':
        return this.destroy();
      case 'incoming':
        return this.migration.incoming();
      case 'migrate':
        return this.migration.migrateOut();
      case 'refresh-snapshots':
        this.snapshotRefreshDue = false; // once per request, whatever comes of it
        return this.snapshot(step);
      case 'snapshot':
        return this.snapshot(step);
    }
  }

  /** Snapshot work (snapshot-runner.ts); its writes compare against the record this step was planned from. */
  private async snapshot(step: Extract<Step, { kind: 'snapshot' | 'refresh-snapshots' }>): Promise<void> {
    const base = this.latest;
    if (!base?.parsed.ok) return;
    await runSnapshotStep(step, {
      uuid: this.uuid,
      record: base.parsed.value,
      up: this.deps.hypervisor.inspect(this.uuid).state !== 'absent',
      hypervisor: this.deps.hypervisor,
      ...(this.deps.snapshotDisks ? { diskSpec: (spec: VmSpec) => this.deps.snapshotDisks!(this.uuid, spec) } : {}),
      write: async (mutate, logText, event) => (await this.writeRecord(base, logText, mutate, event)) !== null,
      now: this.deps.now,
      logger: this.log,
    });
  }

  /**
   * Writes the patch onto the newest record with compare-and-swap, with the
   * event that reports it in the same transaction. On a lost race it
   * re-reads the record and returns null, so the pass re-plans.
   */
  private async write(patch: RecordPatch, logText: string, runtime?: VmHandle, base = this.latest, event?: EventSpec): Promise<StoredVm | null> {
    return this.writeRecord(base, logText, (obj) => {
      obj.status = patch.status;
      if (patch.error !== undefined) obj.error = patch.error;
      if (patch.runtime === null) delete obj.runtime;
      if (patch.force_stop === null) delete obj.force_stop;
      if (runtime) obj.runtime = { ...objectField(obj, 'runtime'), ...runtimeFields(runtime) };
      if (patch.snapshot_request) {
        obj.snapshot_request = { ...objectField(obj, 'snapshot_request'), ...patch.snapshot_request };
        if (patch.snapshot_request.state === 'failed') (obj.snapshot_request as JsonObject).finished_at = this.deps.now().toISOString();
      }
      if (patch.migration) {
        obj.migration = { ...objectField(obj, 'migration'), ...patch.migration };
        if (patch.migration.state === 'completed' || patch.migration.state === 'failed') {
          (obj.migration as JsonObject).finished_at = this.deps.now().toISOString();
        }
      }
    }, event);
  }

  /**
   * Changes the record with `mutate` and writes it with compare-and-swap on
   * `base`; a `logText` is appended to the record's log, and an `event` is
   * written in the same transaction (the record's change and its event are
   * committed together or not at all), then logged and mailed. On a lost
   * race it re-reads the record and returns null.
   */
  private async writeRecord(base: StoredVm | null | undefined, logText: string | null, mutate: (obj: JsonObject) => void, event?: EventSpec): Promise<StoredVm | null> {
    const current = base;
    if (!current) return null;
    const obj: JsonObject = rawObject(current.raw) ?? { uuid: this.uuid, raw: current.raw };
    mutate(obj);
    if (logText !== null) {
      const log = Array.isArray(obj.log) ? obj.log.filter((l): l is string => typeof l === 'string') : [];
      obj.log = appendLog(log, logText, this.deps.now());
    }
    const staged = event ? this.deps.reporter.stage({ ...event, vm: this.uuid }) : null;
    const written = await this.deps.repo.replaceAndGet(current, obj, staged ? [staged.op] : []);
    if (!written) {
      this.log.debug('record changed under us; re-reading');
      await this.reload();
      return null;
    }
    await staged?.announce();
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
      await this.write({ status: 'ERROR', error: storageError, runtime: null }, `not started: ${storageError}`, undefined, vm, { level: 'error', event: 'vm.error', message: `VM ${name}: ${storageError}`, email: false });
      return;
    }
    this.deps.assertMayStart();
    // On the record this start was planned from, not a newer one that came in meanwhile.
    // A retry keeps the error that says why the VM still waits (its disks, below).
    const waiting = this.failures > 0 && vm.parsed.value.status === 'STARTING';
    const starting = await this.write({ status: 'STARTING', ...(waiting ? {} : { error: '' }) }, `starting on ${this.deps.host}`, undefined, vm);
    if (!starting) return;
    let handle: VmHandle;
    try {
      // The hypervisor sees only files: image disks become overlays first (a terminal failure, e.g. a corrupt image, ends in ERROR).
      const files = this.deps.prepareDisks ? await this.deps.prepareDisks(this.uuid, spec).catch((err: unknown) => this.disksNotReady(starting, name, err)) : spec;
      handle = await this.deps.hypervisor.start({ uuid: this.uuid, name, spec: files });
    } catch (err) {
      // A start qemu refused for a passing reason (a disk still locked by a
      // dying copy, memory pressure) is tried again with the worker's backoff,
      // START_ATTEMPTS times in all, before it counts as final.
      const passing = err instanceof DroverError && err.code === 'START_FAILED' && err.retryable;
      if (!isTerminal(err) && !(passing && this.failures + 1 >= START_ATTEMPTS)) {
        if (passing && this.failures === 0) {
          await this.deps.reporter.report({ level: 'warn', event: 'vm.error', vm: this.uuid, message: `VM ${name} could not start on ${this.deps.host} yet (${oneSentence(errorMessage(err))}); trying again.` });
        }
        throw err;
      }
      const error = oneSentence(errorMessage(err)) + (passing ? ` It failed ${START_ATTEMPTS} times in a row.` : '');
      await this.write({ status: 'ERROR', error, runtime: null }, `start failed: ${error}`, undefined, starting, {
        level: 'error',
        event: 'vm.error',
        message: `VM ${name} failed to start on ${this.deps.host}: ${error}`,
        email: step.cause !== 'request',
      });
      return;
    }
    // RUNNING is written on top of our own STARTING write (compare-and-swap on
    // its revision): if someone changed the record meanwhile, the write loses,
    // their change stands, and the next step re-plans from it.
    const how = step.cause === 'request' ? 'started' : 'restarted';
    await this.write({ status: 'RUNNING', error: '' }, `${how} on ${this.deps.host} (pid ${handle.pid})`, handle, starting, {
      level: 'info',
      event: step.cause === 'request' ? 'vm.started' : 'vm.restarted',
      message: `VM ${name} ${how} on ${this.deps.host} as pid ${handle.pid}.`,
      email: false,
    });
  }

  /**
   * Disks that cannot be made yet for a passing reason (the image store is
   * unreachable): the record stays STARTING and its `error` says why, with
   * an event when that sentence changes, while the worker backs off and
   * tries again; the RUNNING write clears it. Rethrows `err` either way.
   */
  private async disksNotReady(starting: StoredVm, name: string, err: unknown): Promise<never> {
    const error = oneSentence(errorMessage(err));
    const shown = starting.parsed.ok ? starting.parsed.value.error : undefined;
    if (!isTerminal(err) && error !== shown) {
      await this.write({ status: 'STARTING', error }, `waiting: ${error}`, undefined, starting, { level: 'warn', event: 'vm.error', message: `VM ${name} cannot start on ${this.deps.host} yet: ${error}`, email: false });
    }
    throw err;
  }

  private async destroy(): Promise<void> {
    const vm = this.latest;
    if (!vm) return;
    await this.deps.hypervisor.destroy(this.uuid);
    const name = vm.parsed.ok ? vm.parsed.value.name : this.uuid;
    const staged = this.deps.reporter.stage({ level: 'info', event: 'vm.deleted', vm: this.uuid, message: `VM ${name} was deleted from ${this.deps.host}.` });
    if (!(await this.deps.repo.deleteIf(vm, [staged.op]))) {
      await this.reload();
      return;
    }
    this.latest = null;
    this.deps.crashes.forget(this.uuid);
    await staged.announce();
  }
}
