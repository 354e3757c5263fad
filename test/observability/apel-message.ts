/**
 * An independent reader of APEL messages for tests, written from APEL's own
 * loader (apel/db/loader/record_factory.py, apel/db/records/record.py and
 * cloud.py) rather than from drover's writer:
 *
 *  - the message is stripped, its header is the first of Python's
 *    splitlines() (which also breaks at \r, \v, \f, \x1c-\x1e, \x85, U+2028,
 *    U+2029), split at its first ":" into type and version;
 *  - the rest, joined with \n, is split on "%%" into records; blank ones
 *    are skipped;
 *  - each record is stripped and split at \n into lines, each line at its
 *    first ":" into a stripped key and value; a line without ":" is an error;
 *  - a cloud record may only hold the v0.4 message fields, must hold the
 *    mandatory ones, and its integer and time fields must be integers.
 */

// Python's str.splitlines() boundaries, control characters included on purpose.
// eslint-disable-next-line no-control-regex
const PY_LINE_BREAKS = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;

export interface ApelMessage {
  type: string;
  version: string;
  records: Array<Map<string, string>>;
}

export function parseApelMessage(text: string): ApelMessage {
  const lines = text.trim().split(PY_LINE_BREAKS);
  const header = lines.shift() ?? '';
  const colon = header.indexOf(':');
  if (colon < 0) throw new Error(`Message header is incorrect: ${header}`);
  const records: Array<Map<string, string>> = [];
  for (const chunk of lines.join('\n').trim().split('%%')) {
    if (chunk.trim() === '') continue;
    const fields = new Map<string, string>();
    for (const line of chunk.trim().split('\n')) {
      const i = line.indexOf(':');
      if (i < 0) throw new Error(`Record contains a line without a key-value pair: ${line}`);
      fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
    }
    records.push(fields);
  }
  return { type: header.slice(0, colon).trim(), version: header.slice(colon + 1).trim(), records };
}

/** CloudRecord (apel/db/records/cloud.py) for message v0.4. */
export const CLOUD_V04_FIELDS = [
  'RecordCreateTime', 'VMUUID', 'SiteName', 'CloudComputeService', 'MachineName', 'LocalUserId', 'LocalGroupId',
  'GlobalUserName', 'FQAN', 'Status', 'StartTime', 'EndTime', 'SuspendDuration', 'WallDuration', 'CpuDuration',
  'CpuCount', 'NetworkType', 'NetworkInbound', 'NetworkOutbound', 'PublicIPCount', 'Memory', 'Disk', 'BenchmarkType',
  'Benchmark', 'StorageRecordId', 'ImageId', 'CloudType',
] as const;
const CLOUD_MANDATORY = ['VMUUID', 'SiteName', 'StartTime'];
const CLOUD_INTEGERS = [
  'SuspendDuration', 'WallDuration', 'CpuDuration', 'CpuCount', 'NetworkInbound', 'NetworkOutbound', 'PublicIPCount',
  'Memory', 'Disk', 'RecordCreateTime', 'StartTime', 'EndTime',
];
const NULLS = ['', 'none', 'null'];

/** Throws the sentence APEL's loader would give for a record it rejects. */
export function checkCloudRecord(fields: Map<string, string>): void {
  for (const key of fields.keys()) {
    if (!(CLOUD_V04_FIELDS as readonly string[]).includes(key)) throw new Error(`Unknown field: ${key}`);
  }
  for (const key of CLOUD_MANDATORY) {
    if (NULLS.includes((fields.get(key) ?? '').toLowerCase())) throw new Error(`Mandatory field ${key} not specified.`);
  }
  for (const key of CLOUD_INTEGERS) {
    const v = fields.get(key);
    if (v !== undefined && !/^-?\d+$/.test(v)) throw new Error(`Invalid int value ${v} in field ${key}`);
  }
}
