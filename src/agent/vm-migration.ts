/**
 * Live migration, both sides, for one VM's worker (vm-worker.ts runs the
 * steps planVm gives: `incoming` on the target, `migrate` on the source).
 * Every record write goes through the worker's compare-and-swap, with the
 * event that reports it in the same transaction (docs/migration.md).
 */
import { DroverError, errorMessage, isTerminal, oneSentence } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Hypervisor, MigrationProgress, VmHandle } from '../hypervisor/hypervisor.js';
import type { JsonObject, StoredVm } from '../store/vm-repository.js';
import { migrationFailed, type EventSpec, type RecordPatch } from './plan-vm.js';

/** How this host takes part in live migrations (config migration_*). */
export interface MigrationSettings {
  /** The address a target's qemu listens on for the migration stream. */
  listenHost: string;
  /** How long the source waits for the target to be ready. */
  prepareTimeoutMs: number;
  /** How long the transfer may take before it is cancelled. */
  timeoutMs: number;
}

/** What a migration needs of its VM's worker. */
export interface MigrationContext {
  uuid: string;
  host: string;
  hypervisor: Hypervisor;
  settings: () => MigrationSettings;
  /** The newest record the worker holds (null: deleted). */
  latest: () => StoredVm | null | undefined;
  /** The worker was closed: stop waiting. */
  closed: () => boolean;
  /** Throws a retryable error when this host may not start VMs now. */
  assertMayStart: () => void;
  /** The worker's patch write (compare-and-swap on `base`, `event` in the same transaction). */
  write: (patch: RecordPatch, logText: string, runtime: VmHandle | undefined, base: StoredVm, event?: EventSpec) => Promise<StoredVm | null>;
  /** The worker's free-form write (compare-and-swap on `base`, `event` in the same transaction). */
  writeRecord: (base: StoredVm | null | undefined, logText: string | null, mutate: (obj: JsonObject) => void, event?: EventSpec) => Promise<StoredVm | null>;
  now: () => Date;
  logger: Logger;
}

/** Progress is written into the record at most this often. */
const PROGRESS_WRITE_MS = 1000;

export class VmMigration {
  constructor(private readonly ctx: MigrationContext) {}

  /**
   * Live migration, target side: qemu waits for the VM on this host's
   * migration address; the record then says where (`migration.uri`) and what
   * runs here (`migration.incoming`), and the source starts sending.
   */
  async incoming(): Promise<void> {
    const vm = this.ctx.latest();
    if (!vm?.parsed.ok) return;
    const { name, spec } = vm.parsed.value;
    this.ctx.assertMayStart();
    let handle: VmHandle;
    try {
      handle = await this.ctx.hypervisor.startIncoming({ uuid: this.ctx.uuid, name, spec, listenHost: this.ctx.settings().listenHost });
    } catch (err) {
      if (!isTerminal(err)) throw err;
      const step = migrationFailed({ host: vm.parsed.value.host ?? '?' }, vm.parsed.value, `host ${this.ctx.host} could not start the VM: ${oneSentence(errorMessage(err))}`);
      await this.ctx.write(step.patch, step.log, undefined, vm, step.event);
      return;
    }
    const written = await this.ctx.writeRecord(vm, `host ${this.ctx.host} waits for the VM at ${handle.incomingUri ?? '?'}`, (obj) => {
      obj.migration = { ...objectField(obj, 'migration'), state: 'ready', uri: handle.incomingUri, incoming: runtimeFields(handle) };
    });
    this.ctx.logger.info({ uri: handle.incomingUri, written: written !== null }, 'waiting for an incoming migration');
  }

  /**
   * Live migration, source side. Resumable: after an agent restart the
   * hypervisor says whether qemu already finished (then only the record is
   * moved) or was mid-way (then it is cancelled and the VM stays here).
   */
  async migrateOut(): Promise<void> {
    const first = this.ctx.latest();
    if (!first?.parsed.ok) return;
    const target = first.parsed.value.migration?.target ?? '';
    const settings = this.ctx.settings();
    const already = await this.ctx.hypervisor.outgoingMigration(this.ctx.uuid);
    if (already === 'completed') return this.finishMigration(target);
    if (already === 'active') {
      await this.ctx.hypervisor.cancelMigration(this.ctx.uuid);
      return this.failMigration('the migration was interrupted by an agent restart and was cancelled');
    }

    // Wait for the target to say where it listens.
    const deadline = Date.now() + settings.prepareTimeoutMs;
    let uri: string | undefined;
    for (;;) {
      const held = this.ctx.latest();
      const rec = held?.parsed.ok ? held.parsed.value : null;
      // Changed under us (stopped, deleted, failed by the target): the next plan decides.
      if (!rec || rec.status !== 'MIGRATING' || rec.host !== this.ctx.host || rec.migration?.target !== target) return;
      const m = rec.migration;
      if ((m.state === 'ready' || m.state === 'sending') && m.uri) {
        uri = m.uri;
        break;
      }
      if (m.state !== 'requested') return;
      if (Date.now() >= deadline) return this.failMigration(`host ${target} did not get ready to receive the VM within ${Math.round(settings.prepareTimeoutMs / 1000)} s`);
      if (this.ctx.closed()) return;
      await new Promise((r) => setTimeout(r, 50));
    }

    // Progress goes into the record at most once a second, one write at a time.
    let lastWrite = 0;
    let writing: Promise<unknown> = Promise.resolve();
    const writeProgress = (p: MigrationProgress, force = false): void => {
      const now = Date.now();
      if (!force && now - lastWrite < PROGRESS_WRITE_MS) return;
      lastWrite = now;
      writing = writing.then(() =>
        this.ctx.writeRecord(this.ctx.latest(), null, (obj) => {
          obj.migration = { ...objectField(obj, 'migration'), state: 'sending', progress: { ...p, updated_at: this.ctx.now().toISOString() } };
        }).catch((err: unknown) => this.ctx.logger.debug({ err: errorMessage(err) }, 'progress write failed')),
      );
    };
    writeProgress({ transferred: 0, remaining: 0, total: 0 }, true);
    try {
      await this.ctx.hypervisor.migrate(this.ctx.uuid, uri, { timeoutMs: settings.timeoutMs, onProgress: (p) => writeProgress(p) });
    } catch (err) {
      await writing;
      if (!(err instanceof DroverError) || err.code !== 'MIGRATION_FAILED') throw err;
      return this.failMigration(err.message.replace(/\.$/, ''));
    }
    await writing;
    return this.finishMigration(target);
  }

  /** qemu has sent everything: the record moves to the target (keeping any request made meanwhile), then the paused source goes. */
  private async finishMigration(target: string): Promise<void> {
    const source = this.ctx.host;
    for (let attempt = 0; attempt < 20 && !this.ctx.closed(); attempt++) {
      const vm = this.ctx.latest();
      if (!vm) return;
      const name = vm.parsed.ok ? vm.parsed.value.name : this.ctx.uuid;
      const written = await this.ctx.writeRecord(vm, `migrated from ${source} to ${target}`, (obj) => {
        const m = objectField(obj, 'migration');
        obj.host = target;
        if (obj.status === 'MIGRATING') obj.status = 'RUNNING';
        obj.error = '';
        if (typeof m.incoming === 'object' && m.incoming !== null) obj.runtime = m.incoming;
        else delete obj.runtime;
        obj.migration = { ...m, state: 'completed', finished_at: this.ctx.now().toISOString() };
      }, { level: 'info', event: 'vm.migrated', message: `VM ${name} was migrated live from ${source} to ${target}.`, email: false });
      if (written) {
        await this.ctx.hypervisor.stop(this.ctx.uuid, { timeoutMs: 0, force: true });
        return;
      }
      if (!this.ctx.latest()) return; // deleted meanwhile
    }
    throw new DroverError('CONFLICT', `Could not move VM ${this.ctx.uuid}'s record to ${target} after its migration; retrying.`, true);
  }

  /** The VM stays here, running; the record says why the migration failed. */
  private async failMigration(why: string): Promise<void> {
    for (let attempt = 0; attempt < 20 && !this.ctx.closed(); attempt++) {
      const vm = this.ctx.latest();
      if (!vm?.parsed.ok) return;
      const step = migrationFailed({ host: this.ctx.host }, vm.parsed.value, why);
      const keepRequest = vm.parsed.value.status !== 'MIGRATING';
      const patch = keepRequest ? { ...step.patch, status: vm.parsed.value.status ?? 'RUNNING' } : step.patch;
      if (await this.ctx.write(patch, step.log, undefined, vm, step.event)) return;
      if (!this.ctx.latest()) return;
    }
  }
}

/** A field of the record that should be an object (a copy; empty when absent or not an object). */
export function objectField(obj: JsonObject, key: string): JsonObject {
  const v = obj[key];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...(v as JsonObject) } : {};
}

/** What the record's `runtime` says of a process. */
export function runtimeFields(h: VmHandle): JsonObject {
  return { pid: h.pid, started_at: h.startedAt, serial_log: h.serialLog, ...(h.serialSocket ? { serial_socket: h.serialSocket } : {}), ...(h.vnc ? { vnc: h.vnc } : {}) };
}
