/**
 * A real etcd per test suite: free loopback ports, a temp data dir, removed
 * afterwards. Each test gets its own key prefix so suites never collide.
 *
 * Secure like `drover up` (docs/security.md): TLS only, client
 * certificates, authentication on. The suite's own client is `admin`
 * (etcd's root role); `authorize(prefix, ...)` creates the component roles
 * for a test's prefix, and `tlsOf(user)` gives a user's certificate files
 * (a host's is made on first use). Processes the suite spawns inherit the
 * admin's files through DROVER_ETCD_CA/CERT/KEY unless a test says
 * otherwise (the agent harness gives each agent its host's instead).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { keySpace } from '../../src/contract/keys.js';
import { EtcdProcess } from '../../src/embedded/etcd-process.js';
import { addHostCert, initPki, pkiFiles, type PkiFiles } from '../../src/security/pki.js';
import { enableAuth, setupAuth } from '../../src/security/setup-auth.js';
import { createEtcdClient } from '../../src/store/etcd-client.js';

export interface TestEtcd {
  server: EtcdProcess;
  endpoint: string;
  /** The admin's client (root role). */
  client: Etcd3;
  dir: string;
  /** The PKI dir (drover pki init), or null for a plain etcd. */
  pki: string | null;
  /** The admin's DROVER_ETCD_CA/CERT/KEY, for a spawned CLI ({} for a plain etcd). */
  env: Record<string, string>;
  /** A user's certificate files: `admin`, `api`, `scheduler`, `host-<name>` (made on first use); null for a plain etcd. */
  tlsOf(user: string): Promise<PkiFiles | null>;
  /** Creates the roles of `prefix` for the API, the scheduler and these hosts (drover etcd setup-auth). */
  authorize(prefix: string, opts?: { hosts?: readonly string[]; schedulerHosts?: readonly string[] }): Promise<void>;
  /** A fresh prefix like "/t-1a2b3c" for one test. */
  newPrefix(): string;
  close(): Promise<void>;
}

export async function startTestEtcd(opts: { plain?: boolean } = {}): Promise<TestEtcd> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-etcd-'));
  const pki = opts.plain ? null : join(dir, 'pki');
  if (pki) await initPki(pki);
  const server = new EtcdProcess({ dataDir: join(dir, 'data'), logFile: join(dir, 'etcd.log'), ...(pki ? { tlsDir: pki } : {}) });
  await server.start();
  const admin = pki ? pkiFiles(pki, 'admin') : null;
  const client = createEtcdClient([server.endpoint], { tls: admin });
  const env: Record<string, string> = admin ? { DROVER_ETCD_CA: admin.ca, DROVER_ETCD_CERT: admin.cert, DROVER_ETCD_KEY: admin.key } : {};
  if (pki) await enableAuth(client);
  Object.assign(process.env, env);
  const authorized = new Map<string, Promise<void>>();
  return {
    server,
    endpoint: server.endpoint,
    client,
    dir,
    pki,
    env,
    async tlsOf(user) {
      if (!pki) return null;
      if (user.startsWith('host-')) await addHostCert(pki, user.slice('host-'.length));
      return pkiFiles(pki, user);
    },
    async authorize(prefix, o = {}) {
      if (!pki) return;
      const key = JSON.stringify([prefix, o.hosts ?? [], o.schedulerHosts ?? []]);
      if (!authorized.has(key)) authorized.set(key, setupAuth(client, { keys: keySpace(prefix), hosts: o.hosts ?? [], schedulerHosts: o.schedulerHosts ?? [] }).then(() => undefined));
      await authorized.get(key);
    },
    newPrefix: () => `/t-${randomBytes(4).toString('hex')}`,
    close: async () => {
      client.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** startApi's etcd settings for a test's prefix: the `api` user's certificate, its roles created. */
export async function apiEtcd(etcd: TestEtcd, prefix: string): Promise<{ endpoints: string[]; etcdTls: PkiFiles | null }> {
  await etcd.authorize(prefix);
  return { endpoints: [etcd.endpoint], etcdTls: await etcd.tlsOf('api') };
}
