/**
 * `--etcd`, `--prefix` and `--json`, on every command that talks to etcd.
 * A flag beats the environment, which beats the default. They are added to
 * each leaf command rather than the root so that `drover vm list --json`
 * reads naturally and `--help` of each command lists them.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ApiTarget } from './api-client.js';
import { DEFAULT_PREFIX, normalizePrefix } from '../contract/keys.js';
import { DroverError } from '../lib/errors.js';
import type { CliEnv } from './context.js';

export const DEFAULT_ETCD = 'http://127.0.0.1:2379';

export interface GlobalFlags {
  etcd?: string;
  prefix?: string;
  json?: boolean;
  api?: string;
  tokenFile?: string;
}

export interface GlobalOptions {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly json: boolean;
  /** Set when the command goes through the HTTP API instead of etcd (addApiOptions). */
  readonly api: ApiTarget | null;
}

/**
 * `--api` and `--token-file`, on the commands that can go through the HTTP
 * API (vm list, get, create, start, stop, restart, delete, events).
 */
export function addApiOptions(cmd: Command): Command {
  return cmd
    .option('--api <url>', 'go through the drover API at this URL instead of etcd (env DROVER_API_URL); needs a token')
    .option('--token-file <file>', 'read the API token from this file (env DROVER_TOKEN holds the token itself)');
}

function resolveApi(flags: GlobalFlags, env: CliEnv): ApiTarget | null {
  const url = flags.api ?? env.DROVER_API_URL;
  if (url === undefined) {
    if (flags.tokenFile !== undefined) throw new DroverError('USAGE', 'Option --token-file needs --api (or DROVER_API_URL).');
    return null;
  }
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw new DroverError('USAGE', `The API URL ${JSON.stringify(url)} must be an http:// or https:// URL.`);
  let token = env.DROVER_TOKEN;
  if (flags.tokenFile !== undefined) {
    try {
      token = readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new DroverError('USAGE', `Cannot read the token file ${flags.tokenFile}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}.`);
    }
  }
  if (token === undefined || token.trim() === '') throw new DroverError('USAGE', 'Going through the API needs a token: set DROVER_TOKEN or pass --token-file (drover token create makes one).');
  return { url, token: token.trim() };
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
    api: resolveApi(flags, env),
  });
}
