/**
 * One APEL cloud usage record as message text (EGI Cloud Accounting Usage
 * Record v0.4; docs/accounting.md). Pure: no clock, no files.
 *
 * The syntax is what APEL's loader reads (apel/db/loader/record_factory.py,
 * apel/db/records/record.py): a header line, then `Key: Value` lines, each
 * record ended by a `%%` line. The loader splits the whole message on `%%`
 * first, the header off with Python's splitlines() (which breaks at \r, \v,
 * \f, \x1c-\x1e, \x85, U+2028 and U+2029 as well as \n), the rest at \n, and
 * each line at its first ":"; it strips both halves. So a value must hold no
 * line break of any kind and no "%%", or a VM's name could end the record
 * and forge fields; leading and trailing blanks would be lost anyway.
 * `toApelValue` makes any string safe (cASO, the OpenStack publisher, drops
 * non-ASCII for APEL in the same way); the caller logs what it changed.
 */

export const APEL_CLOUD_HEADER = 'APEL-cloud-message: v0.4';
export const APEL_RECORD_END = '%%';

/** APEL's varchar(255) columns. */
const MAX_VALUE_LENGTH = 255;

/** The fields drover writes, in APEL's message order (CloudRecord._msg_fields). */
export interface CloudUsageRecord {
  VMUUID: string;
  SiteName: string;
  CloudComputeService?: string;
  MachineName?: string;
  LocalUserId?: string;
  LocalGroupId?: string;
  GlobalUserName?: string;
  FQAN?: string;
  /** completed: the VM's process has ended (started and suspended are for running VMs). */
  Status: 'completed';
  /** Seconds since the epoch (UTC). */
  StartTime: number;
  EndTime: number;
  /** Seconds. */
  WallDuration: number;
  CpuDuration: number;
  CpuCount: number;
  /** MB allocated (what cASO sends: the flavour's RAM in MiB). */
  Memory?: number;
  /** GB allocated. */
  Disk?: number;
  ImageId?: string;
  CloudType: string;
}

type TextField = 'VMUUID' | 'SiteName' | 'CloudComputeService' | 'MachineName' | 'LocalUserId' | 'LocalGroupId' | 'GlobalUserName' | 'FQAN' | 'Status' | 'ImageId' | 'CloudType';

const FIELD_ORDER: ReadonlyArray<{ key: keyof CloudUsageRecord; kind: 'text' | 'int' }> = [
  { key: 'VMUUID', kind: 'text' },
  { key: 'SiteName', kind: 'text' },
  { key: 'CloudComputeService', kind: 'text' },
  { key: 'MachineName', kind: 'text' },
  { key: 'LocalUserId', kind: 'text' },
  { key: 'LocalGroupId', kind: 'text' },
  { key: 'GlobalUserName', kind: 'text' },
  { key: 'FQAN', kind: 'text' },
  { key: 'Status', kind: 'text' },
  { key: 'StartTime', kind: 'int' },
  { key: 'EndTime', kind: 'int' },
  { key: 'WallDuration', kind: 'int' },
  { key: 'CpuDuration', kind: 'int' },
  { key: 'CpuCount', kind: 'int' },
  { key: 'Memory', kind: 'int' },
  { key: 'Disk', kind: 'int' },
  { key: 'ImageId', kind: 'text' },
  { key: 'CloudType', kind: 'text' },
];

/** APEL's loader rejects a record without these (CloudRecord._mandatory_fields). */
const MANDATORY: ReadonlySet<keyof CloudUsageRecord> = new Set(['VMUUID', 'SiteName', 'StartTime']);

/** Values APEL's loader reads as NULL (record.py check_for_null), compared lower-cased. */
const NULL_WORDS: ReadonlySet<string> = new Set(['', 'none', 'null']);

/**
 * The value as a record line can carry it: line breaks and other control
 * characters become blanks, accents are dropped from their letters and any
 * other non-ASCII character is removed, runs of "%" shrink to one, blanks
 * are collapsed and trimmed, and the result is cut to 255 characters.
 */
export function toApelValue(raw: string): string {
  return raw
    .replace(/[\p{Cc}\p{Zl}\p{Zp}]+/gu, ' ')
    .normalize('NFKD')
    .replace(/[^\x20-\x7e]/g, '')
    .replace(/%{2,}/g, '%')
    .replace(/ {2,}/g, ' ')
    .trim()
    .slice(0, MAX_VALUE_LENGTH)
    .trim();
}

export interface ChangedValue {
  field: TextField;
  from: string;
  /** What the record holds; null when nothing was left and the line was left out. */
  to: string | null;
}

export interface FormattedRecord {
  /** The whole message: header, the record's lines, `%%`. */
  text: string;
  /** Values that had to be changed to fit the format, for the caller to log. */
  changed: ChangedValue[];
}

/**
 * The message text of one record. Text values are made safe with
 * `toApelValue` (and reported in `changed`); a mandatory field left empty,
 * or a number that is not a non-negative integer, is the caller's bug and
 * throws.
 */
export function formatCloudRecord(record: CloudUsageRecord): FormattedRecord {
  const lines = [APEL_CLOUD_HEADER];
  const changed: ChangedValue[] = [];
  for (const { key, kind } of FIELD_ORDER) {
    const value = record[key];
    if (value === undefined) {
      if (MANDATORY.has(key)) throw new Error(`APEL cloud record field ${key} is mandatory.`);
      continue;
    }
    if (kind === 'int') {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new Error(`APEL cloud record field ${key} must be a non-negative integer, not ${String(value)}.`);
      }
      lines.push(`${key}: ${value}`);
      continue;
    }
    const raw = String(value);
    const safe = toApelValue(raw);
    const isNull = NULL_WORDS.has(safe.toLowerCase());
    if (MANDATORY.has(key) && isNull) throw new Error(`APEL cloud record field ${key} has no usable value (${JSON.stringify(raw)}).`);
    if (safe !== raw || safe === '') changed.push({ field: key as TextField, from: raw, to: safe === '' ? null : safe });
    if (safe !== '') lines.push(`${key}: ${safe}`);
  }
  lines.push(APEL_RECORD_END);
  return { text: `${lines.join('\n')}\n`, changed };
}

