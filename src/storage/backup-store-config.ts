/**
 * Where the fleet's backups go: one cluster-wide record in etcd,
 * `P/config/backup_store` (docs/backups.md), an S3 bucket's location
 * written by `drover backup store set`. The agents that carry out backups
 * asked through the API, the API (which lists and deletes them) and the
 * CLI (when given no --s3-bucket) all read it. Credentials are never in
 * it: each process brings its own (an agent's s3_access_key_id /
 * s3_secret_access_key, DROVER_S3_* or AWS_* in the environment).
 */
import type { KeySpace } from '../contract/keys.js';
import { describeIssues } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import type { KvStore } from '../store/kv-store.js';
import { readConfigJson } from './config-json.js';
import { s3LocationSchema, type S3Location } from './s3/location.js';

export const BACKUP_STORE_CONFIG = 'backup_store';

/** Parses `P/config/backup_store`; one sentence naming the bad field otherwise. */
export function parseBackupStoreConfig(json: unknown): S3Location {
  const r = s3LocationSchema.safeParse(json);
  if (!r.success) {
    throw new DroverError('CONFIG_INVALID', `The backup store setting is invalid: ${describeIssues(r.error.issues).replace(/\.$/, '')} (drover backup store set).`);
  }
  return Object.freeze(r.data);
}

/** The stored setting, or null when none is set. */
export async function readBackupStoreConfig(kv: KvStore, keys: KeySpace): Promise<S3Location | null> {
  const json = await readConfigJson(kv, keys, BACKUP_STORE_CONFIG, 'backup store', 'drover backup store set');
  return json === null ? null : parseBackupStoreConfig(json);
}

/** Like readBackupStoreConfig, but a missing setting is an error that says what to do. */
export async function requireBackupStoreConfig(kv: KvStore, keys: KeySpace): Promise<S3Location> {
  const config = await readBackupStoreConfig(kv, keys);
  if (!config) throw new DroverError('CONFLICT', 'No backup store is set for this cluster; an operator sets one with `drover backup store set --s3-bucket B [--s3-endpoint URL] [--s3-path-style]`.');
  return config;
}

/** Writes the setting (checked first). */
export async function writeBackupStoreConfig(kv: KvStore, keys: KeySpace, config: unknown): Promise<S3Location> {
  const parsed = parseBackupStoreConfig(config);
  await kv.put(keys.config(BACKUP_STORE_CONFIG), JSON.stringify(parsed));
  return parsed;
}

/** One line for people: `s3://bucket (endpoint, region, path-style)`. */
export function describeBackupStore(config: S3Location): string {
  const where = [config.endpoint ?? 'AWS', `region ${config.region}`, ...(config.path_style ? ['path-style'] : [])];
  return `s3://${config.bucket}/backups/ (${where.join(', ')})`;
}
