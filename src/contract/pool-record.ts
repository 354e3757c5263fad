/**
 * The pool record, `P/pool/<name>` (a drover key, docs/pools.md): a VM
 * template and how many VMs of it the scheduler keeps, Vcycle's machinetype
 * with its `target_share`, `max_wallclock_seconds`, `fizzle_seconds` and
 * `backoff_seconds`.
 *
 * Users write everything but `status`; the leading scheduler writes only
 * `status`, each side with a compare-and-swap that keeps the other's fields.
 * Like the VM record, parsing never throws and unknown fields are kept.
 */
import { z } from 'zod';
import { describeIssues, HOST_NAME_RE, vmSpecSchema, type ParseResult } from './vm-record.js';

/** A VM name is `<pool>-<8 hex digits>`, so a pool name leaves 9 of the 63 characters free. */
export const POOL_NAME_RE = /^[a-z0-9][a-z0-9-]{0,53}$/;

/** Vcycle's example configuration uses 600 s for both. */
export const DEFAULT_FIZZLE_SECONDS = 600;
export const DEFAULT_BACKOFF_SECONDS = 600;

/**
 * Spec defaults of a pool's VMs. Pool VMs are meant to end and be replaced,
 * so a template without `restart` gets `on-failure` (a guest power-off ends
 * in STOP), not the VM default `always`.
 */
export const POOL_SPEC_DEFAULTS: Readonly<Record<string, unknown>> = Object.freeze({ vcpus: 1, vnc: 'unix', restart: 'on-failure' });

export const poolTemplateSchema = z.looseObject({
  owner: z.string().max(256).optional(),
  spec: vmSpecSchema,
});

/** Written by the leading scheduler only. */
export const poolStatusSchema = z.looseObject({
  /** How many VMs the pool should have now (count, or the share of the hosts' capacity). */
  target: z.int().optional(),
  /** No new VMs before this time (ISO): a VM ended within fizzle_seconds. */
  backoff_until: z.string().optional(),
  /** The last fizzle, one sentence. */
  last_fizzle: z.string().optional(),
  /** Why the scheduler cannot use the record, one sentence; absent when it can. */
  error: z.string().optional(),
});

export const poolRecordSchema = z
  .looseObject({
    name: z.string().regex(POOL_NAME_RE, 'must match ^[a-z0-9][a-z0-9-]{0,53}$'),
    template: poolTemplateSchema,
    /** The hosts whose capacity the share counts and the VMs may use; every host when absent. */
    hosts: z.array(z.string().regex(HOST_NAME_RE, 'must be a host name')).min(1).max(1000).optional(),
    /** Fraction of the hosts' capacity, in VMs of the template (Vcycle's target_share). */
    target_share: z.number().gt(0).max(1).optional(),
    /** A fixed number of VMs instead of a share. */
    count: z.int().min(0).max(100_000).optional(),
    /** A RUNNING VM is stopped (TO_STOP) once its run is this old. */
    max_wallclock_seconds: z.int().min(1).optional(),
    /** A VM that ends having run less than this puts the pool in backoff. */
    fizzle_seconds: z.int().min(0).max(86_400 * 30).default(DEFAULT_FIZZLE_SECONDS),
    /** How long a pool in backoff creates no VMs. */
    backoff_seconds: z.int().min(0).max(86_400 * 30).default(DEFAULT_BACKOFF_SECONDS),
    status: poolStatusSchema.optional(),
  })
  .refine((p) => (p.target_share === undefined) !== (p.count === undefined), {
    message: 'a pool needs exactly one of "target_share" or "count"',
    path: ['target_share'],
  })
  .refine((p) => p.max_wallclock_seconds === undefined || p.max_wallclock_seconds > p.fizzle_seconds, {
    message: 'must be greater than fizzle_seconds, or every VM stopped at its wallclock limit would count as a fizzle',
    path: ['max_wallclock_seconds'],
  });

export type PoolRecord = z.infer<typeof poolRecordSchema>;
export type PoolStatus = z.infer<typeof poolStatusSchema>;

/** Parses the raw bytes of a `P/pool/<name>` value; `name` is the key's last segment. */
export function parsePoolRecord(raw: string, name: string): ParseResult<PoolRecord> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    return { ok: false, error: `The pool record is not valid JSON (${(err as Error).message}).` };
  }
  return validatePoolRecord(json, name);
}

export function validatePoolRecord(json: unknown, name: string): ParseResult<PoolRecord> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, error: 'The pool record must be a JSON object.' };
  }
  if (!POOL_NAME_RE.test(name)) {
    return { ok: false, error: `The key's last segment ${JSON.stringify(name)} is not a pool name (^[a-z0-9][a-z0-9-]{0,53}$).` };
  }
  const result = poolRecordSchema.safeParse(json);
  if (!result.success) return { ok: false, error: describeIssues(result.error.issues) };
  if (result.data.name !== name) {
    return { ok: false, error: `Field name ${JSON.stringify(result.data.name)} does not match the key's name ${name}.` };
  }
  return { ok: true, value: result.data };
}
