/**
 * A fleet of VM records for the API and web benchmarks, and a `drover api`
 * process serving it: N records spread over 10 hosts and 100 owners, a
 * third of them stopped, written 200 at a time.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { KeySpace } from '../../src/contract/keys.js';
import { freePort } from '../../src/embedded/etcd-process.js';
import type { KvStore } from '../../src/store/kv-store.js';
import type { Cleanup } from './cleanup.js';
import type { Json } from './status-watch.js';

export function fleetRecord(uuid: string, i: number): Json {
  return {
    uuid,
    name: `vm-${String(i).padStart(5, '0')}`,
    owner: `user${i % 100}`,
    host: `hv${i % 10}`,
    status: i % 3 === 0 ? 'STOP' : 'RUNNING',
    spec: { vcpus: 1, memory: 256, disks: [{ image: 'debian-12', size: 4096 }], nics: [{ network: 'br0' }], vnc: 'unix', restart: 'always' },
    log: [`2026-12-01T00:00:00.000Z - started on hv${i % 10}`],
  };
}

/** Writes `n` records; returns their uuids in order (uuids[i] is vm-<i>). */
export async function writeFleet(kv: KvStore, keys: KeySpace, n: number): Promise<string[]> {
  const uuids = Array.from({ length: n }, () => randomUUID());
  for (let i = 0; i < n; i += 200) {
    await Promise.all(uuids.slice(i, i + 200).map((u, j) => kv.put(keys.vm(u), JSON.stringify(fleetRecord(u, i + j)))));
  }
  return uuids;
}

/** `drover api` as its own process on a free loopback port; its base URL once it listens. */
export async function startApiProcess(droverBin: string, endpoint: string, prefix: string, cleanup: Cleanup, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const port = await freePort();
  const api = spawn(droverBin, ['api', '--etcd', endpoint, '--prefix', prefix, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'], env });
  cleanup.add('stop the API', async () => void api.kill('SIGTERM'));
  await new Promise<void>((resolve, reject) => {
    api.stdout.on('data', (d: Buffer) => (d.toString().includes('drover API on') ? resolve() : undefined));
    api.once('exit', () => reject(new Error('drover api exited')));
  });
  return `http://127.0.0.1:${port}`;
}
