/**
 * APEL accounting (docs/accounting.md): when a VM's qemu process has ended,
 * the agent hands its usage to `vmFinished`, which decides and writes.
 *
 *  - A run shorter than fizzle_seconds of wall time gets no record (a debug
 *    line says why); the pool's own fizzle_seconds wins for a pool's VM.
 *  - Otherwise one APEL cloud usage record (v0.4) is written to
 *    `<state>/apel-archive/YYYYMMDD/`, and also to `apel-outgoing/` when
 *    gocdb_sitename is set (apel-spool.ts).
 *
 * One record describes one run of the VM's process, so VMUUID is the VM's
 * uuid plus the run's start in milliseconds: APEL's server keeps one row per
 * VMUUID and month, each carrying the VM's totals so far (cloud.sql's
 * ReplaceCloudRecord and SummariseVMs), so two runs under the bare uuid
 * would replace each other or be subtracted from each other. The same run
 * reported twice gives the same VMUUID, which APEL replaces, not adds.
 *
 * `vmFinished` never throws: bad input and filesystem errors are logged as
 * one sentence and reported as 'failed', so the agent's loop goes on.
 */
import { z } from 'zod';
import { UUID_RE, type VmRecord } from '../../contract/vm-record.js';
import { errorMessage, oneSentence } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { AccountingSettings } from './accounting-settings.js';
import { formatCloudRecord, type CloudUsageRecord } from './apel-cloud-record.js';
import { spoolApelMessage } from './apel-spool.js';

/** What the agent measured of one finished run of a VM's process. */
export interface FinishedVmUsage {
  uuid: string;
  name: string;
  owner?: string;
  /** The pool that created the VM, if any: the record's LocalGroupId. */
  pool?: string;
  /** The pool's fizzle_seconds, when the VM has a pool; the agent's setting otherwise. */
  poolFizzleSeconds?: number;
  /** A VO's FQAN to attribute the usage to (Vcycle's accounting_fqan). */
  fqan?: string;
  /** When the process started and ended (wall time is their difference). */
  startedAt: Date;
  endedAt: Date;
  /** CPU seconds the process used (user + system, from /proc). */
  cpuSeconds: number;
  vcpus: number;
  memoryMiB: number;
  /** Disk space allocated to the VM, GiB. */
  diskGiB?: number;
  /** The first image disk's image (uuid, name:version or name). */
  image?: string;
}

const finishedVmUsageSchema = z.object({
  uuid: z.string().regex(UUID_RE, 'uuid must be a lower-case UUID'),
  name: z.string(),
  owner: z.string().optional(),
  pool: z.string().optional(),
  poolFizzleSeconds: z.number().min(0).optional(),
  fqan: z.string().optional(),
  startedAt: z.date(),
  endedAt: z.date(),
  cpuSeconds: z.number().min(0),
  vcpus: z.int().min(1),
  memoryMiB: z.number().min(0),
  diskGiB: z.number().min(0).optional(),
  image: z.string().optional(),
}).refine((u) => u.endedAt.getTime() >= u.startedAt.getTime(), { message: 'endedAt is before startedAt' });

/**
 * A finished run's usage from the VM's record (owner, pool, vCPUs, memory,
 * the first image disk) and what was measured of its process (the
 * collector's start, end and last CPU seconds).
 */
export function finishedVmUsage(
  record: Pick<VmRecord, 'uuid' | 'name' | 'owner' | 'pool' | 'spec'>,
  run: { startedAt: string; endedAt: string; cpuSeconds: number },
  poolFizzleSeconds?: number,
): FinishedVmUsage {
  return {
    uuid: record.uuid,
    name: record.name,
    owner: record.owner,
    pool: record.pool,
    poolFizzleSeconds: record.pool === undefined ? undefined : poolFizzleSeconds,
    startedAt: new Date(run.startedAt),
    endedAt: new Date(run.endedAt),
    cpuSeconds: run.cpuSeconds,
    vcpus: record.spec.vcpus,
    memoryMiB: record.spec.memory,
    image: record.spec.disks?.find((d) => d.image !== undefined)?.image,
  };
}

export type AccountingOutcome = 'written' | 'fizzled' | 'failed';

export interface AccountingOptions {
  stateDir: string;
  /** This agent's host name: the CloudComputeService when none is configured. */
  host: string;
  /** Read at every call, so a config reload applies to the next record. */
  config: () => AccountingSettings;
  logger: Logger;
  /** The record's CloudType, e.g. "drover/0.1.0". */
  cloudType?: string;
}

/** A quoted string whose line breaks, including U+2028/U+2029 (which JSON leaves alone), are escapes. */
function quoteForLog(value: string): string {
  return JSON.stringify(value).replace(/[\u2028\u2029\u0085]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export class Accounting {
  constructor(private readonly opts: AccountingOptions) {}

  /** Writes the record of a finished run, or decides it fizzled. Never throws. */
  async vmFinished(usage: FinishedVmUsage): Promise<AccountingOutcome> {
    const log = this.opts.logger;
    const parsed = finishedVmUsageSchema.safeParse(usage);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      log.error({ vm: usage.uuid }, `No accounting record for VM ${String(usage.uuid)}: its usage is invalid (${issue?.path.join('.') || 'usage'}: ${issue?.message ?? 'invalid'}).`);
      return 'failed';
    }
    const settings = this.opts.config();
    const fizzleSeconds = usage.poolFizzleSeconds ?? settings.fizzle_seconds;
    const wallMs = usage.endedAt.getTime() - usage.startedAt.getTime();
    if (wallMs < fizzleSeconds * 1000) {
      log.debug({ vm: usage.uuid }, `No accounting record for VM ${usage.name}: it ran ${(wallMs / 1000).toFixed(1)} s, under fizzle_seconds (${fizzleSeconds} s).`);
      return 'fizzled';
    }
    try {
      const { text, changed } = formatCloudRecord(this.toRecord(usage, settings));
      for (const c of changed) {
        log.warn({ vm: usage.uuid, field: c.field }, `The accounting record of VM ${usage.uuid} holds ${c.field} ${c.to === null ? 'empty' : JSON.stringify(c.to)} instead of ${quoteForLog(c.from)}: APEL records carry printable ASCII without line breaks or "%%".`);
      }
      const paths = await spoolApelMessage({ stateDir: this.opts.stateDir, text, at: usage.endedAt, outgoing: settings.gocdb_sitename !== undefined });
      log.info({ vm: usage.uuid, ...paths }, `Accounting record of VM ${usage.name} written (${Math.floor(wallMs / 1000)} s wall, ${Math.round(usage.cpuSeconds)} s CPU).`);
      return 'written';
    } catch (err) {
      log.error({ vm: usage.uuid, err: errorMessage(err) }, oneSentence(`Could not write the accounting record of VM ${usage.name}: ${errorMessage(err)}`));
      return 'failed';
    }
  }

  private toRecord(u: FinishedVmUsage, s: AccountingSettings): CloudUsageRecord {
    const start = Math.floor(u.startedAt.getTime() / 1000);
    const end = Math.floor(u.endedAt.getTime() / 1000);
    return {
      VMUUID: `${u.uuid}-${u.startedAt.getTime()}`,
      // Unset, the record is only archived, under a name no GOCDB site has (Vcycle's placeholder).
      SiteName: s.gocdb_sitename ?? `drover:${this.opts.host}`,
      CloudComputeService: s.apel_cloud_compute_service ?? this.opts.host,
      MachineName: u.name,
      LocalUserId: u.owner,
      LocalGroupId: u.pool,
      FQAN: u.fqan,
      Status: 'completed',
      StartTime: start,
      EndTime: end,
      WallDuration: end - start,
      CpuDuration: Math.round(u.cpuSeconds),
      CpuCount: u.vcpus,
      Memory: Math.round(u.memoryMiB),
      Disk: u.diskGiB === undefined ? undefined : Math.ceil(u.diskGiB),
      ImageId: u.image,
      CloudType: this.opts.cloudType ?? 'drover',
    };
  }
}
