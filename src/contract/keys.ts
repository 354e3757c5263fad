/**
 * The etcd key layout (CONTRACT.md section 2, plus drover's own keys,
 * documented in docs/etcd-keys.md). Every key is built here and nowhere else.
 */
export const DEFAULT_PREFIX = '/v1';

export interface KeySpace {
  readonly prefix: string;
  readonly vmPrefix: string;
  readonly hostPrefix: string;
  readonly alivePrefix: string;
  readonly logPrefix: string;
  readonly poolPrefix: string;
  /** Image records (docs/storage.md). */
  readonly imagePrefix: string;
  /** Per-host stats summaries (docs/metrics.md). */
  readonly statsPrefix: string;
  /** Cluster-wide settings, `P/config/` (image_store, backup_store). */
  readonly configPrefix: string;
  /** The scheduler's leader election (etcd3's Election under `P/`: `P/election/scheduler/<lease>`). */
  readonly electionPrefix: string;
  /** Console tickets an API hands to one host's agent, `P/console/<host>/<id>` (docs/consoles.md): a host reads only its own. */
  consoleTicketPrefix(host: string): string;
  consoleTicket(host: string, id: string): string;
  vm(uuid: string): string;
  host(name: string): string;
  /** Liveness key of a host, attached to the agent's lease. */
  alive(name: string): string;
  log(id: string): string;
  /** A pool of VMs kept at a share of the hosts' capacity (docs/pools.md). */
  pool(name: string): string;
  /** An image record, `P/image/<uuid>` (docs/storage.md). */
  image(uuid: string): string;
  /** Cluster-wide settings, `P/config/<name>` (e.g. `image_store`, docs/storage.md). */
  config(name: string): string;
  /** A host's stats summary, `P/stats/<name>`, under its agent's lease (docs/metrics.md). */
  stats(name: string): string;
  /** The last segment of a key below `under` (e.g. the uuid of a VM key). */
  idOf(key: string, under: string): string;
  /** Users, token hashes, sessions (CONTRACT.md section 7; docs/security.md): only the API and `drover user|token` read it. */
  readonly auth: AuthKeys;
}

export interface AuthKeys {
  readonly prefix: string;
  readonly userPrefix: string;
  readonly tokenPrefix: string;
  readonly sessionPrefix: string;
  user(name: string): string;
  token(id: string): string;
  session(id: string): string;
  /** A one-time login link's token (`drover up`), deleted when used. */
  link(id: string): string;
  /** Failed-login counters, under a lease as long as the throttle window. */
  throttle(id: string): string;
  /** A console ticket (docs/consoles.md): single-use, under a 30 s lease. */
  ticket(id: string): string;
}

export function keySpace(prefix: string = DEFAULT_PREFIX): KeySpace {
  const p = normalizePrefix(prefix);
  const vmPrefix = `${p}/vm/`;
  const hostPrefix = `${p}/host/`;
  const alivePrefix = `${p}/alive/`;
  const logPrefix = `${p}/log/`;
  const poolPrefix = `${p}/pool/`;
  const imagePrefix = `${p}/image/`;
  const statsPrefix = `${p}/stats/`;
  const consoleTicketPrefix = (host: string): string => `${p}/console/${host}/`;
  return Object.freeze({
    prefix: p,
    vmPrefix,
    hostPrefix,
    alivePrefix,
    logPrefix,
    poolPrefix,
    imagePrefix,
    statsPrefix,
    configPrefix: `${p}/config/`,
    electionPrefix: `${p}/election/`,
    consoleTicketPrefix,
    consoleTicket: (host: string, id: string) => consoleTicketPrefix(host) + id,
    vm: (uuid: string) => vmPrefix + uuid,
    host: (name: string) => hostPrefix + name,
    alive: (name: string) => alivePrefix + name,
    log: (id: string) => logPrefix + id,
    pool: (name: string) => poolPrefix + name,
    image: (uuid: string) => imagePrefix + uuid,
    stats: (name: string) => statsPrefix + name,
    config: (name: string) => `${p}/config/${name}`,
    idOf: (key: string, under: string) => key.slice(under.length),
    auth: authKeys(`${p}/auth/`),
  });
}

function authKeys(prefix: string): AuthKeys {
  const userPrefix = `${prefix}user/`;
  const tokenPrefix = `${prefix}token/`;
  const sessionPrefix = `${prefix}session/`;
  return Object.freeze({
    prefix,
    userPrefix,
    tokenPrefix,
    sessionPrefix,
    user: (name: string) => userPrefix + name,
    token: (id: string) => tokenPrefix + id,
    session: (id: string) => sessionPrefix + id,
    link: (id: string) => `${prefix}link/${id}`,
    throttle: (id: string) => `${prefix}throttle/${id}`,
    ticket: (id: string) => `${prefix}ticket/${id}`,
  });
}

/** "/v1/" and "v1" both become "/v1"; the root prefix "/" becomes "". */
export function normalizePrefix(prefix: string): string {
  let p = prefix.trim();
  if (!p.startsWith('/')) p = `/${p}`;
  while (p.endsWith('/')) p = p.slice(0, -1);
  return p;
}
