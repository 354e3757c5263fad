/**
 * Hosts in network namespaces for the host-fault scenario: a bridge the
 * test creates in the root namespace holds a private /24 (10.213.N.0/24,
 * chosen free of every route on the machine), with etcd listening on its
 * .1; each "host" is a namespace joined to the bridge by a veth pair, with
 * its own loopback. A partition takes the host's end of the veth down, so
 * the host's agent (and everything it spawned) loses etcd while the rest of
 * the machine, the test included, does not. Nothing is ever sent beyond
 * these links: every address used is on them.
 *
 * Every command is `ip` with an argv array; names carry a random tag so
 * that parallel runs never meet, and `destroy` removes all it made.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function ip(args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 30_000 })).stdout;
  } catch (err) {
    throw new Error(`ip ${args.join(' ')} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`, { cause: err });
  }
}

export interface NetnsHost {
  /** The namespace's name (`ip netns exec NAME ...`). */
  ns: string;
  address: string;
  /** The veth end inside the namespace. */
  inner: string;
  /** argv prefix that runs a command inside the namespace. */
  wrap: string[];
}

export interface NetnsHub {
  bridge: string;
  /** The bridge's own address, where etcd listens. */
  gateway: string;
  hosts: NetnsHost[];
  partition(host: NetnsHost): Promise<void>;
  heal(host: NetnsHost): Promise<void>;
  destroy(): Promise<void>;
}

/** A /24 under 10.213.0.0/16 that no route on the machine touches. */
async function freeSubnet(): Promise<string> {
  const routes = await ip(['-4', 'route', 'show', 'table', 'all']);
  for (let i = 0; i < 50; i++) {
    const third = 1 + Math.floor(Math.random() * 250);
    const net = `10.213.${third}.`;
    if (!routes.includes(net) && !routes.includes('10.213.0.0/16') && !routes.includes('10.0.0.0/8')) return net;
  }
  throw new Error('no free 10.213.N.0/24 subnet for the test bridge');
}

export async function createNetnsHub(count: number): Promise<NetnsHub> {
  const tag = randomBytes(3).toString('hex');
  const bridge = `dch${tag}`;
  const net = await freeSubnet();
  const gateway = `${net}1`;
  const hosts: NetnsHost[] = [];
  const made: string[] = [];
  const hub: NetnsHub = {
    bridge,
    gateway,
    hosts,
    partition: async (h) => void (await ip(['-n', h.ns, 'link', 'set', h.inner, 'down'])),
    heal: async (h) => void (await ip(['-n', h.ns, 'link', 'set', h.inner, 'up'])),
    async destroy() {
      for (const ns of made) await ip(['netns', 'del', ns]).catch(() => undefined);
      await ip(['link', 'del', bridge]).catch(() => undefined);
    },
  };
  try {
    await ip(['link', 'add', bridge, 'type', 'bridge']);
    await ip(['addr', 'add', `${gateway}/24`, 'dev', bridge]);
    await ip(['link', 'set', bridge, 'up']);
    for (let i = 0; i < count; i++) {
      const ns = `dch${tag}-h${i}`;
      const outer = `dch${tag}o${i}`;
      const inner = `dch${tag}i${i}`;
      const address = `${net}${10 + i}`;
      await ip(['netns', 'add', ns]);
      made.push(ns);
      await ip(['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
      await ip(['link', 'set', inner, 'netns', ns]);
      await ip(['link', 'set', outer, 'master', bridge, 'up']);
      await ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', inner]);
      await ip(['-n', ns, 'link', 'set', inner, 'up']);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      hosts.push({ ns, address, inner, wrap: ['ip', 'netns', 'exec', ns] });
    }
  } catch (err) {
    await hub.destroy();
    throw err;
  }
  return hub;
}
