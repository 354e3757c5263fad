/**
 * `--etcd`, `--prefix` and `--json`, on every command that talks to etcd.
 * A flag beats the environment, which beats the default. They are added to
 * each leaf command rather than the root so that `drover vm list --json`
 * reads naturally and `--help` of each command lists them.
 */
import type { Command } from 'commander';
import { DEFAULT_PREFIX, normalizePrefix } from '../contract/keys.js';
import { DroverError } from '../lib/errors.js';
import type { CliEnv } from './context.js';

export const DEFAULT_ETCD = 'http://127.0.0.1:2379';

export interface GlobalFlags {
  etcd?: string;
  prefix?: string;
  json?: boolean;
}

export interface GlobalOptions {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly json: boolean;
}

export function addGlobalOptions(cmd: Command): Command {
  return cmd
    .option('--etcd <urls>', `etcd endpoints, comma-separated (env DROVER_ETCD, default ${DEFAULT_ETCD})`)
    .option('--prefix <prefix>', `key prefix in etcd (env DROVER_PREFIX, default ${DEFAULT_PREFIX})`)
    .option('--json', 'print JSON instead of text');
}

export function resolveGlobalOptions(flags: GlobalFlags, env: CliEnv): GlobalOptions {
  const etcd = flags.etcd ?? env.DROVER_ETCD ?? DEFAULT_ETCD;
  const endpoints = etcd
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
    .map((e) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(e) ? e : `http://${e}`));
  if (endpoints.length === 0) {
    throw new DroverError('USAGE', 'Option --etcd needs at least one URL, e.g. --etcd http://127.0.0.1:2379.');
  }
  for (const e of endpoints) {
    if (!URL.canParse(e)) throw new DroverError('USAGE', `The etcd endpoint ${JSON.stringify(e)} is not a URL.`);
  }
  return Object.freeze({
    endpoints: Object.freeze(endpoints),
    prefix: normalizePrefix(flags.prefix ?? env.DROVER_PREFIX ?? DEFAULT_PREFIX),
    json: flags.json === true,
  });
}
