/**
 * Backups and restores asked through the VM record's `backup_request`
 * (docs/backups.md, "Through the API"), for the VMs designated to this
 * host: the disks are here, so this agent moves them. Each request is
 * claimed with a compare-and-swap (`requested` → `running`, `host`), run
 * beside the VM's worker (a running VM's snapshot goes through its own
 * `snapshot_request`, which the worker carries out), and ends `done` with
 * `result` or `failed` with one sentence in `error`. `progress` is written
 * at most once a second.
 *
 * A request left `running` by this host with no job here is one a previous
 * run of this agent did not finish (it was stopped or crashed): it is
 * failed with a sentence saying so, and its temporary snapshot (if any) is
 * asked to be deleted.
 */
import { backupRequestSchema, type BackupRequest } from '../contract/backup-request.js';
import type { AgentConfig } from '../config/agent-config.js';
import { appendLog } from '../contract/vm-record.js';
import { errorMessage, oneSentence } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { findBackup, listBackups, type BackupManifest, type BackupTarget } from '../storage/backup.js';
import { backupTransferSchema } from '../storage/backup-settings.js';
import { requireBackupStoreConfig } from '../storage/backup-store-config.js';
import { createS3Client, s3CredentialsFrom } from '../storage/s3/client.js';
import { rawObject, type JsonObject, type StoredVm } from '../store/vm-repository.js';
import { vmDiskFiles } from '../vm-ops/backup-disks.js';
import { requestSnapshot } from '../vm-ops/snapshot-vm.js';
import { backupVm, restoreVmDisks } from '../vm-ops/vm-backup.js';
import type { VmStore } from '../vm-ops/vm-store.js';
import type { EventReporter, Report as EventReport } from './event-reporter.js';

export interface BackupRunnerDeps {
  host: string;
  store: VmStore;
  /** The agent's state dir (image disks' overlays are under its vms/). */
  stateDir: string;
  config: () => AgentConfig;
  reporter: EventReporter;
  logger: Logger;
  now: () => Date;
}

/** Progress is written into the record at most this often. */
const PROGRESS_WRITE_MS = 1000;

export class BackupRunner {
  private readonly jobs = new Map<string, Promise<void>>();

  constructor(private readonly deps: BackupRunnerDeps) {}

  /** Looks at a record designated to this host: starts a requested job, or fails one a previous run left. */
  offer(vm: StoredVm): void {
    if (!vm.parsed.ok || this.jobs.has(vm.uuid)) return;
    const parsed = backupRequestSchema.safeParse(rawObject(vm.raw)?.backup_request);
    if (!parsed.success) return;
    const req = parsed.data;
    if (req.state === 'requested') this.track(vm.uuid, this.run(vm.uuid, req));
    else if (req.state === 'running' && req.host === this.deps.host) this.track(vm.uuid, this.orphaned(vm.uuid, req));
  }

  /** Resolves once no job runs (for tests and an orderly stop). */
  async whenIdle(): Promise<void> {
    while (this.jobs.size > 0) await Promise.all(this.jobs.values());
  }

  private track(uuid: string, job: Promise<void>): void {
    const done = job
      .catch((err: unknown) => this.deps.logger.warn({ vm: uuid, err: errorMessage(err) }, 'backup request left unfinished'))
      .finally(() => this.jobs.delete(uuid));
    this.jobs.set(uuid, done);
  }

  /** Writes into the request `id` only (a later request is never overwritten); false when it is gone or replaced. */
  /** Changes the request (if it is still request `id`); an `event` goes in the same transaction, then to the log and e-mail. */
  private async writeRequest(uuid: string, id: string, fields: Partial<BackupRequest>, log?: string, event?: EventReport): Promise<boolean> {
    const staged = event ? this.deps.reporter.stage(event) : null;
    const written = await this.deps.store.vms.update(
      uuid,
      (current) => {
        const obj = rawObject(current.raw);
        const req = obj?.backup_request as JsonObject | undefined;
        if (!obj || typeof req !== 'object' || req === null || req.id !== id) return null;
        const next: JsonObject = { ...obj, backup_request: { ...req, ...fields } };
        if (log !== undefined) next.log = appendLog(Array.isArray(obj.log) ? (obj.log as string[]) : undefined, log, this.deps.now());
        return next;
      },
      { also: staged ? [staged.op] : [] },
    );
    if (written !== null) await staged?.announce();
    return written !== null;
  }

  private async run(uuid: string, req: BackupRequest): Promise<void> {
    const { host, now } = this.deps;
    const claimed = await this.deps.store.vms.update(uuid, (current) => {
      const obj = rawObject(current.raw);
      const cur = obj?.backup_request as JsonObject | undefined;
      if (!obj || cur?.id !== req.id || (cur.state !== undefined && cur.state !== 'requested')) return null;
      const { progress: _p, error: _e, ...rest } = cur;
      return { ...obj, backup_request: { ...rest, state: 'running', host, started_at: now().toISOString() } };
    });
    if (!claimed) return;
    const name = claimed.parsed.ok ? claimed.parsed.value.name : uuid;
    const progress = new ProgressWriter((p) => this.writeRequest(uuid, req.id, { progress: p }).then(() => undefined));
    try {
      const target = await this.target(progress);
      const outcome = req.op === 'backup' ? await this.backup(claimed, req, target) : req.op === 'restore' ? await this.restore(claimed, req, target) : null;
      if (outcome === null) throw new Error(`Backup operation ${JSON.stringify(req.op.slice(0, 64))} is unknown; use backup or restore.`);
      await progress.flush();
      const size = outcome.manifest.disks.reduce((n, d) => n + d.size, 0);
      const what = req.op === 'backup' ? `backup ${outcome.manifest.id} (${outcome.manifest.name}) taken` : `restored from backup ${outcome.manifest.id} (${outcome.manifest.name})`;
      await this.writeRequest(uuid, req.id, { state: 'done', result: { id: outcome.manifest.id, name: outcome.manifest.name, size }, finished_at: now().toISOString() }, what, {
        level: 'info',
        vm: uuid,
        event: req.op === 'backup' ? 'vm.backup_created' : 'vm.backup_restored',
        message: req.op === 'backup' ? `Backup ${outcome.manifest.id} of VM ${name} was taken (${outcome.manifest.disks.length} disks, ${size} bytes).` : `VM ${name} was restored from backup ${outcome.manifest.id}.`,
      });
    } catch (err) {
      await progress.flush();
      const error = oneSentence(errorMessage(err));
      this.deps.logger.warn({ vm: uuid, op: req.op, err: error }, 'backup request failed');
      const what = req.op === 'restore' ? 'restore' : 'backup';
      await this.writeRequest(uuid, req.id, { state: 'failed', error, finished_at: now().toISOString() }, `${what} failed: ${error}`, {
        level: 'error',
        vm: uuid,
        event: 'vm.backup_failed',
        message: `The ${what} of VM ${name} failed: ${error.replace(/[.\s]+$/, '')}.`,
        email: false,
      });
    }
  }

  /** The cluster's backup store, opened with this host's credentials and transfer settings. */
  private async target(progress: ProgressWriter): Promise<BackupTarget> {
    const config = this.deps.config();
    const location = await requireBackupStoreConfig(this.deps.store.kv, this.deps.store.keys);
    const credentials = s3CredentialsFrom(config.s3_access_key_id, config.s3_secret_access_key);
    const client = createS3Client({ ...location, ...(credentials !== undefined ? { credentials } : {}) });
    const transfer = backupTransferSchema.parse(Object.fromEntries(Object.keys(backupTransferSchema.shape).map((k) => [k, config[k as keyof AgentConfig]])));
    return { client, bucket: location.bucket, transfer, onProgress: (what, done, total) => progress.set({ what, done, total }) };
  }

  private async backup(vm: StoredVm, req: BackupRequest, target: BackupTarget): Promise<{ manifest: BackupManifest }> {
    try {
      const manifest = await backupVm(vm, vmDiskFiles(vm, this.deps.stateDir), {
        store: this.deps.store,
        target,
        ...(req.name !== undefined ? { name: req.name } : {}),
        onProgress: (line) => this.deps.logger.info({ vm: vm.uuid }, line),
        onSnapshot: async (snapshot) => {
          await this.writeRequest(vm.uuid, req.id, { snapshot });
        },
      });
      return { manifest };
    } finally {
      target.client.destroy();
    }
  }

  private async restore(vm: StoredVm, req: BackupRequest, target: BackupTarget): Promise<{ manifest: BackupManifest }> {
    try {
      if (req.backup === undefined) throw new Error('A restore request needs `backup`, the id or name of one of the VM\'s backups.');
      const manifest = findBackup(await listBackups(target, vm.uuid), req.backup);
      await restoreVmDisks(vm, vmDiskFiles(vm, this.deps.stateDir), manifest, target, this.deps.stateDir);
      return { manifest };
    } finally {
      target.client.destroy();
    }
  }

  /** A request a previous run of this agent claimed and never finished. */
  private async orphaned(uuid: string, req: BackupRequest): Promise<void> {
    const what = req.op === 'restore' ? 'restore' : 'backup';
    const leftover = req.snapshot !== undefined ? `; its temporary snapshot ${req.snapshot} is being deleted` : '';
    const error = `The agent on ${this.deps.host} restarted during the ${what}, which did not finish${leftover}; ask again.`;
    if (!(await this.writeRequest(uuid, req.id, { state: 'failed', error, finished_at: this.deps.now().toISOString() }, `${what} failed: ${error}`, { level: 'error', vm: uuid, event: 'vm.backup_failed', message: error, email: false }))) return;
    if (req.snapshot === undefined) return;
    await requestSnapshot(this.deps.store, { op: 'delete', ref: uuid, name: req.snapshot, waitSeconds: null, onProgress: () => undefined }).catch((err: unknown) => {
      this.deps.logger.warn({ vm: uuid, snapshot: req.snapshot, err: errorMessage(err) }, 'the temporary snapshot of an unfinished backup was not deleted');
    });
  }
}

/** Keeps the newest progress and writes it at most once per PROGRESS_WRITE_MS, one write at a time. */
class ProgressWriter {
  private pending: BackupRequest['progress'] | undefined;
  private lastWrite = 0;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly write: (p: NonNullable<BackupRequest['progress']>) => Promise<void>) {}

  set(p: NonNullable<BackupRequest['progress']>): void {
    this.pending = p;
    if (Date.now() - this.lastWrite < PROGRESS_WRITE_MS) return;
    this.lastWrite = Date.now();
    this.writing = this.writing.then(() => this.drain());
  }

  /** Waits for the write under way (a final state must not be overwritten by a late progress write). */
  async flush(): Promise<void> {
    await this.writing;
  }

  private async drain(): Promise<void> {
    const p = this.pending;
    this.pending = undefined;
    if (p !== undefined) await this.write(p).catch(() => undefined);
  }
}
