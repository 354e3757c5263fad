/**
 * Starting the API process: its own etcd client and repositories, then
 * Fastify listening. `drover api` and `drover up` both call startApi.
 */
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { DEFAULT_LOGIN_POLICY } from '../auth/authenticate.js';
import { keySpace } from '../contract/keys.js';
import { DroverError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { AuthRepository } from '../store/auth-repository.js';
import { createEtcdClient, PLAIN_ETCD_WARNING, type EtcdTlsFiles } from '../store/etcd-client.js';
import { EventLog } from '../store/event-log.js';
import { HostRepository } from '../store/host-repository.js';
import { KvStore } from '../store/kv-store.js';
import { VmRepository } from '../store/vm-repository.js';
import type { ApiDeps, ApiSettings } from './context.js';
import { buildApi } from './server.js';
import { VmIndex } from './vm-index.js';

export const DEFAULT_API_LISTEN = '127.0.0.1:7070';

export interface ApiOptions {
  endpoints: readonly string[];
  /** etcd TLS files (the `api` certificate), or null/absent for plain HTTP. */
  etcdTls?: EtcdTlsFiles | null;
  prefix: string;
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  bootDirs?: readonly string[];
  logger: Logger;
  settings?: Partial<ApiSettings>;
}

export interface RunningApi {
  /** `http://127.0.0.1:7070` (or https). */
  url: string;
  deps: ApiDeps;
  stop(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new DroverError('USAGE', `The listen address ${JSON.stringify(listen)} must be HOST:PORT, e.g. 127.0.0.1:7070.`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export async function startApi(opts: ApiOptions): Promise<RunningApi> {
  const { host, port } = parseListen(opts.listen);
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw new DroverError('USAGE', 'HTTPS needs both --tls-cert and --tls-key.');
  let https: { cert: Buffer; key: Buffer } | undefined;
  if (opts.tlsCert !== undefined && opts.tlsKey !== undefined) {
    try {
      https = { cert: await readFile(opts.tlsCert), key: await readFile(opts.tlsKey) };
    } catch (err) {
      throw new DroverError('CONFIG_INVALID', `Cannot read the TLS certificate or key: ${errorMessage(err)}.`);
    }
  }
  if (!opts.etcdTls) opts.logger.warn({ etcd: opts.endpoints }, PLAIN_ETCD_WARNING);
  const client = createEtcdClient(opts.endpoints, { tls: opts.etcdTls ?? null });
  const keys = keySpace(opts.prefix);
  const kv = new KvStore(client);
  const vmIndex = new VmIndex(kv, keys, opts.logger);
  try {
    await vmIndex.start();
  } catch (err) {
    client.close();
    throw err;
  }
  const deps: ApiDeps = {
    store: { keys, kv, vms: new VmRepository(kv, keys), events: new EventLog(kv, keys), hosts: new HostRepository(kv, keys), auth: new AuthRepository(kv, keys) },
    vmIndex,
    settings: {
      bootDirs: opts.bootDirs ?? [],
      tls: https !== undefined,
      login: DEFAULT_LOGIN_POLICY,
      maxWaitSeconds: 3600,
      streamRecheckMs: 15_000,
      name: `api@${hostname()}`,
      ...opts.settings,
    },
    logger: opts.logger,
    now: () => new Date(),
  };
  const app = await buildApi(deps, https ? { https } : {});
  try {
    await app.listen({ host, port });
  } catch (err) {
    await vmIndex.stop();
    client.close();
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : errorMessage(err);
    throw new DroverError('SPAWN_FAILED', `The API cannot listen on ${opts.listen}: ${why}.`);
  }
  const addr = app.server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const url = `${https ? 'https' : 'http'}://${shownHost}:${actualPort}`;
  opts.logger.info({ url }, 'API listening');
  return {
    url,
    deps,
    stop: async () => {
      await app.close();
      await vmIndex.stop();
      client.close();
    },
  };
}
