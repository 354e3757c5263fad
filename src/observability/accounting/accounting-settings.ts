/**
 * The accounting keys of the agent's config (docs/accounting.md), Vcycle's
 * names (seed 001): one zod shape the agent's schema spreads in.
 *
 *  - `fizzle_seconds`: a VM whose run lasted less wall time gets no record.
 *    A pool's own `fizzle_seconds` wins for its VMs; the default is the
 *    pools' (DEFAULT_FIZZLE_SECONDS, Vcycle's 600).
 *  - `gocdb_sitename`: the site's GOCDB name. Set, records also go to
 *    `apel-outgoing/` for ssmsend; unset, only to `apel-archive/` with a
 *    placeholder site name, so no misnamed record can reach APEL.
 *  - `apel_cloud_compute_service`: the record's CloudComputeService, the
 *    name of this cloud resource within the site (the host's name when
 *    unset; set one name on every host to be one service).
 */
import { z } from 'zod';
import { DEFAULT_FIZZLE_SECONDS } from '../../contract/pool-record.js';

/** GOCDB site names: letters, digits, ".", "_", "-" (e.g. UKI-NORTHGRID-MAN-HEP, RAL-LCG2). */
export const GOCDB_SITENAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** A value an APEL record line can carry unchanged: printable ASCII, no "%%", at most 255 characters. */
const APEL_TEXT_RE = /^(?!.*%%)[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$/;

export const accountingConfigShape = {
  /** Seconds of wall time a VM's run needs to be accounted (Vcycle's key; a pool's own value wins). */
  fizzle_seconds: z.int().min(0).max(86_400 * 30).default(DEFAULT_FIZZLE_SECONDS),
  /** The GOCDB site name; set, records are also queued in apel-outgoing/ for ssmsend. */
  gocdb_sitename: z.string().regex(GOCDB_SITENAME_RE, 'must be a GOCDB site name (letters, digits, ".", "_", "-")').optional(),
  /** The record's CloudComputeService; the host's name when unset. */
  apel_cloud_compute_service: z
    .string()
    .regex(APEL_TEXT_RE, 'must be printable ASCII without "%%", at most 255 characters')
    .optional(),
};

export const accountingSettingsSchema = z.strictObject(accountingConfigShape);
export type AccountingSettings = Readonly<z.infer<typeof accountingSettingsSchema>>;

/** The defaults, for callers without a config file. */
export const DEFAULT_ACCOUNTING: AccountingSettings = Object.freeze(accountingSettingsSchema.parse({}));
