/**
 * A real etcd per test suite: free loopback ports, a temp data dir, removed
 * afterwards. Each test gets its own key prefix so suites never collide.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { EtcdProcess } from '../../src/embedded/etcd-process.js';
import { createEtcdClient } from '../../src/store/etcd-client.js';

export interface TestEtcd {
  server: EtcdProcess;
  endpoint: string;
  client: Etcd3;
  dir: string;
  /** A fresh prefix like "/t-1a2b3c" for one test. */
  newPrefix(): string;
  close(): Promise<void>;
}

export async function startTestEtcd(): Promise<TestEtcd> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-etcd-'));
  const server = new EtcdProcess({ dataDir: join(dir, 'data'), logFile: join(dir, 'etcd.log') });
  await server.start();
  const client = createEtcdClient([server.endpoint]);
  return {
    server,
    endpoint: server.endpoint,
    client,
    dir,
    newPrefix: () => `/t-${randomBytes(4).toString('hex')}`,
    close: async () => {
      client.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
