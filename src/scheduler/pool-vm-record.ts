/**
 * The VM record a pool creates: its template (every field, so a team's own
 * fields travel too) with a fresh uuid, the name `<pool>-<first 8 hex digits
 * of the uuid>`, status REQUESTED_NEW and no host (the placement pass places
 * it), `pool` set, and the spec defaults filled in. `spec.nodes` becomes the
 * pool's `hosts` unless the template names its own.
 */
import { POOL_SPEC_DEFAULTS, type PoolRecord } from '../contract/pool-record.js';
import { appendLog } from '../contract/vm-record.js';
import type { JsonObject } from '../store/vm-repository.js';

/**
 * `rawTemplate` is the template as stored, not as parsed: the schema fills
 * `restart: "always"`, the VM default, where a pool's default is `on-failure`.
 */
export function poolVmRecord(pool: PoolRecord, rawTemplate: JsonObject, uuid: string, now: Date): JsonObject {
  const { host: _host, ...template } = rawTemplate;
  const spec: JsonObject = { ...(template.spec as JsonObject) };
  for (const [k, v] of Object.entries(POOL_SPEC_DEFAULTS)) if (spec[k] === undefined) spec[k] = v;
  if (spec.nodes === undefined && pool.hosts) spec.nodes = [...pool.hosts];
  return {
    ...template,
    uuid,
    name: `${pool.name}-${uuid.slice(0, 8)}`,
    status: 'REQUESTED_NEW',
    pool: pool.name,
    spec,
    log: appendLog([], `created by pool ${pool.name}`, now),
  };
}
