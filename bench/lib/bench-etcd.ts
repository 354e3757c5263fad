/**
 * A benchmark's etcd: a real etcd process (free ports) with its data and log
 * under `root`, and a KvStore on it; both closed by `cleanup`.
 */
import { join } from 'node:path';
import { EtcdProcess } from '../../src/embedded/etcd-process.js';
import { createEtcdClient } from '../../src/store/etcd-client.js';
import { KvStore } from '../../src/store/kv-store.js';
import type { Cleanup } from './cleanup.js';

export async function startBenchEtcd(root: string, cleanup: Cleanup): Promise<{ endpoint: string; kv: KvStore }> {
  const etcd = new EtcdProcess({ dataDir: join(root, 'etcd', 'data'), logFile: join(root, 'etcd.log') });
  cleanup.add('stop etcd', () => etcd.stop());
  await etcd.start();
  const client = createEtcdClient([etcd.endpoint]);
  cleanup.add('close the etcd client', async () => client.close());
  return { endpoint: etcd.endpoint, kv: new KvStore(client) };
}
