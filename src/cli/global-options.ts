/**
 * `--etcd`, `--etcd-ca/--etcd-cert/--etcd-key`, `--prefix` and `--json`, on
 * every command that talks to etcd.
 * A flag beats the environment, which beats the default. They are added to
 * each leaf command rather than the root so that `drover vm list --json`
 * reads naturally and `--help` of each command lists them.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { readUpClient } from '../embedded/up-client.js';
import type { Command } from 'commander';
import type { EtcdTlsFiles } from '../store/etcd-client.js';
import type { ApiTarget } from './api-client.js';
import { DEFAULT_PREFIX, normalizePrefix } from '../contract/keys.js';
import { DroverError } from '../lib/errors.js';
import type { CliEnv, CliIo } from './context.js';

export const DEFAULT_ETCD = 'http://127.0.0.1:2379';

export interface GlobalFlags {
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  prefix?: string;
  json?: boolean;
  api?: string;
  tokenFile?: string;
}

export interface GlobalOptions {
  readonly endpoints: readonly string[];
  /** TLS files for etcd, or null for plain HTTP. */
  readonly etcdTls: EtcdTlsFiles | null;
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

const ETCD_TLS_HELP = {
  ca: "CA certificate of etcd's TLS (env DROVER_ETCD_CA)",
  cert: 'client certificate for etcd; its CN is the etcd user (env DROVER_ETCD_CERT)',
  key: 'key of the client certificate (env DROVER_ETCD_KEY)',
};

export function addGlobalOptions(cmd: Command): Command {
  return cmd
    .option('--etcd <urls>', `etcd endpoints, comma-separated (env DROVER_ETCD, default: the local drover up's, else ${DEFAULT_ETCD})`)
    .option('--etcd-ca <file>', ETCD_TLS_HELP.ca)
    .option('--etcd-cert <file>', ETCD_TLS_HELP.cert)
    .option('--etcd-key <file>', ETCD_TLS_HELP.key)
    .option('--prefix <prefix>', `key prefix in etcd (env DROVER_PREFIX, default ${DEFAULT_PREFIX})`)
    .option('--json', 'print JSON instead of text');
}

/** Flag, then environment; with neither, the local drover up's (its endpoint and admin certificate). */
function resolveEtcd(flags: GlobalFlags, env: CliEnv): { etcd: string; tls: EtcdTlsFiles | null } {
  const set = (v: string | undefined): string | undefined => (v === '' ? undefined : v);
  const ca = set(flags.etcdCa ?? env.DROVER_ETCD_CA);
  const cert = set(flags.etcdCert ?? env.DROVER_ETCD_CERT);
  const key = set(flags.etcdKey ?? env.DROVER_ETCD_KEY);
  const explicit = flags.etcd ?? env.DROVER_ETCD;
  if (explicit === undefined && ca === undefined && cert === undefined && key === undefined) {
    const up = readUpClient(resolve(env.DROVER_STATE_DIR ?? '.drover'));
    if (up) return { etcd: up.endpoint, tls: { ca: up.ca, cert: up.cert, key: up.key } };
  }
  if ((cert === undefined) !== (key === undefined)) throw new DroverError('USAGE', 'An etcd client certificate needs both --etcd-cert and --etcd-key (or DROVER_ETCD_CERT and DROVER_ETCD_KEY).');
  if (cert !== undefined && ca === undefined) throw new DroverError('USAGE', "An etcd client certificate needs --etcd-ca (or DROVER_ETCD_CA), the CA that signed etcd's certificate.");
  return { etcd: explicit ?? DEFAULT_ETCD, tls: ca === undefined ? null : { ca, ...(cert !== undefined && key !== undefined ? { cert, key } : {}) } };
}

/**
 * With `io`, one warning on stderr when etcd is reached in plain HTTP on
 * another machine (the user's choice, e.g. their own etcd): whoever is on
 * the path reads and writes the cluster. Loopback stays quiet.
 */
export function resolveGlobalOptions(flags: GlobalFlags, env: CliEnv, io?: { stderr: Pick<CliIo['stderr'], 'write'> }): GlobalOptions {
  const { etcd, tls } = resolveEtcd(flags, env);
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
  if (io && !tls && endpoints.some((e) => e.startsWith('http://') && !/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:|\/|$)/.test(e))) {
    io.stderr.write('drover: warning: etcd is reached over plain HTTP without a client certificate; whoever is on the path can read and change the cluster (--etcd-ca, --etcd-cert, --etcd-key; docs/security.md).\n');
  }
  return Object.freeze({
    endpoints: Object.freeze(endpoints),
    etcdTls: tls,
    prefix: normalizePrefix(flags.prefix ?? env.DROVER_PREFIX ?? DEFAULT_PREFIX),
    json: flags.json === true,
    api: resolveApi(flags, env),
  });
}
