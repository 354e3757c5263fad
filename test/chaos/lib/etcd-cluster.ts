/**
 * A 3-member etcd cluster on loopback for the chaos scenarios: clients speak
 * plain HTTP on 127.0.0.1, members speak TLS to each other with certificates
 * from a throwaway CA (lib/pki.ts) and check each other's (peer client cert
 * auth). A member can be killed with SIGKILL and started again on its data
 * dir and ports; `leader()` asks the members which one leads.
 *
 * (src/embedded/etcd-process.ts runs one member only; this is the test's
 * own spawner for a real cluster, with the same habits: free ports, its own
 * process group, killed when the test process exits.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { freePort } from '../../../src/embedded/etcd-process.js';
import { createEtcdClient } from '../../../src/store/etcd-client.js';
import { sleep } from './chaos-env.js';
import { createPki } from './pki.js';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  argv: string[];
  child: ChildProcess | null;
  exited: Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Every client URL, comma-separated (what `drover agent --etcd` takes). */
  endpoint: string;
  client: Etcd3;
  newPrefix(): string;
  /** The member that leads now (asked of every running member; they must agree). */
  leader(): Promise<EtcdMember>;
  kill(member: EtcdMember): Promise<void>;
  start(member: EtcdMember): Promise<void>;
  /** Resolves once every running member answers /health (which needs a quorum). */
  healthy(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

interface StatusReply {
  header?: { member_id?: string };
  leader?: string;
}

async function status(m: EtcdMember): Promise<StatusReply | null> {
  try {
    const res = await fetch(`${m.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
    return res.ok ? ((await res.json()) as StatusReply) : null;
  } catch {
    return null;
  }
}

/**
 * Starts `size` members; clients reach them on `clientHost` (127.0.0.1, or
 * the address of a bridge the test made: lib/netns.ts).
 */
export async function startEtcdCluster(dir: string, size = 3, clientHost = '127.0.0.1'): Promise<EtcdCluster> {
  await mkdir(join(dir, 'pki'), { recursive: true });
  const pki = await createPki(join(dir, 'pki'));
  const token = `chaos-${randomBytes(4).toString('hex')}`;
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    members.push({ name: `m${i}`, clientUrl: `http://${clientHost}:${await freePort()}`, peerUrl: `https://127.0.0.1:${await freePort()}`, dataDir: join(dir, `m${i}`), argv: [], child: null, exited: Promise.resolve() });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  for (const m of members) {
    const cert = await pki.member(m.name);
    m.argv = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', token,
      '--peer-client-cert-auth',
      '--peer-trusted-ca-file', pki.ca,
      '--peer-cert-file', cert.cert,
      '--peer-key-file', cert.key,
    ];
  }

  const spawnMember = async (m: EtcdMember): Promise<void> => {
    await mkdir(m.dataDir, { recursive: true, mode: 0o700 });
    const log = await open(join(dir, `${m.name}.log`), 'a');
    const child = spawn('etcd', m.argv, { stdio: ['ignore', log.fd, log.fd], detached: true });
    await log.close();
    const killOnExit = (): void => void child.kill('SIGKILL');
    process.once('exit', killOnExit);
    m.child = child;
    m.exited = new Promise((resolve) => {
      child.once('exit', () => {
        process.off('exit', killOnExit);
        if (m.child === child) m.child = null;
        resolve();
      });
    });
  };

  const cluster: EtcdCluster = {
    members,
    endpoint: members.map((m) => m.clientUrl).join(','),
    client: createEtcdClient(members.map((m) => m.clientUrl)),
    newPrefix: () => `/t-${randomBytes(4).toString('hex')}`,
    async leader() {
      for (let attempt = 0; attempt < 100; attempt++) {
        const replies = await Promise.all(members.filter((m) => m.child).map(async (m) => ({ m, s: await status(m) })));
        const leaders = new Set(replies.map((r) => r.s?.leader).filter((l) => l !== undefined && l !== '0'));
        const leaderId = leaders.size === 1 ? [...leaders][0] : undefined;
        const leader = replies.find((r) => r.s?.header?.member_id === leaderId)?.m;
        if (leader) return leader;
        await sleep(100);
      }
      throw new Error('the etcd members did not agree on a leader within 10 s');
    },
    async kill(m) {
      m.child?.kill('SIGKILL');
      await m.exited;
    },
    async start(m) {
      if (!m.child) await spawnMember(m);
    },
    async healthy(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const ok = await Promise.all(
          members.filter((m) => m.child).map((m) => fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false)),
        );
        if (ok.every(Boolean)) return;
        if (Date.now() > deadline) throw new Error(`the etcd cluster was not healthy within ${timeoutMs} ms`);
        await sleep(100);
      }
    },
    async close() {
      cluster.client.close();
      for (const m of members) await cluster.kill(m);
    },
  };
  await Promise.all(members.map(spawnMember));
  await cluster.healthy();
  return cluster;
}
