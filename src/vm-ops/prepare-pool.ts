/**
 * Turns what a user hands `pool create` into the record to write: the
 * defaults made explicit (fizzle_seconds and backoff_seconds as Vcycle's
 * example, the template spec's vcpus 1, vnc unix, restart on-failure), no
 * `status` (the scheduler's). Fields we do not know are kept. Checked with
 * the contract's schema; nothing is written when it fails.
 */
import { DEFAULT_BACKOFF_SECONDS, DEFAULT_FIZZLE_SECONDS, POOL_SPEC_DEFAULTS, poolRecordSchema } from '../contract/pool-record.js';
import { describeIssues } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import type { JsonObject } from '../store/vm-repository.js';

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function preparePoolRecord(input: unknown): JsonObject {
  if (!isObject(input)) throw new DroverError('INVALID_SPEC', 'The pool record must be a JSON object.');
  const { status: _status, ...record } = input;
  record.fizzle_seconds ??= DEFAULT_FIZZLE_SECONDS;
  record.backoff_seconds ??= DEFAULT_BACKOFF_SECONDS;
  if (isObject(record.template) && isObject(record.template.spec)) {
    const spec: JsonObject = { ...record.template.spec };
    for (const [k, v] of Object.entries(POOL_SPEC_DEFAULTS)) spec[k] ??= v;
    record.template = { ...record.template, spec };
  }
  const result = poolRecordSchema.safeParse(record);
  if (!result.success) throw new DroverError('INVALID_SPEC', describeIssues(result.error.issues));
  return record;
}
