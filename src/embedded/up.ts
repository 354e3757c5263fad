/**
 * `drover up`: everything on one machine, in the foreground. An etcd child
 * process (data in the state dir, loopback port), the agent, and with
 * --demo a small VM from the test guest. Ctrl-C stops drover; VMs keep
 * running (and are adopted by the next `drover up`) unless --stop-vms.
 *
 * Secure by default (docs/security.md): the first start makes a PKI under
 * `<state>/pki`; etcd serves TLS only, wants client certificates and has
 * authentication on, with one user per component (the agent `host-<name>`,
 * the API `api`, this process and the CLI `admin`). The CLI finds the
 * endpoint and admin certificate in `<state>/etcd-client.json`.
 */
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createHash, randomUUID } from 'node:crypto';
import { checkQemuUserReaches, lookupQemuUser } from '../hypervisor/qemu/qemu-user.js';
import { keySpace } from '../contract/keys.js';
import { mergeConfigLayers } from '../config/load-config.js';
import { startAgent, type RunningAgent } from '../agent/run-agent.js';
import { DroverError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { createEtcdClient } from '../store/etcd-client.js';
import { KvStore } from '../store/kv-store.js';
import { rawObject, VmRepository } from '../store/vm-repository.js';
import { setDefaultImageStore } from '../storage/image-store-config.js';
import { EtcdProcess } from './etcd-process.js';
import { startApi, type RunningApi } from '../api/run-api.js';
import { addUser, createLoginLink, LINK_TTL_SECONDS } from '../auth/accounts.js';
import { AuthRepository } from '../store/auth-repository.js';
import { hostUser, initPki, pkiFiles } from '../security/pki.js';
import { setupAuth } from '../security/setup-auth.js';
import { UP_CLIENT_FILE } from './up-client.js';

export interface UpOptions {
  stateDir: string;
  etcdPort: number;
  name?: string;
  accel: 'kvm' | 'tcg' | 'auto';
  prefix: string;
  /** Where the API listens (`off`: no API). */
  apiListen: string;
  /** Directories users may boot kernels from (the demo guest's). */
  bootDirs: readonly string[];
  /** Kernel and initrd for the demo VM; no demo VM when absent. */
  demo?: { kernel: string; initrd: string };
  logger: Logger;
  print: (line: string) => void;
}

export interface RunningUp {
  endpoint: string;
  agent: RunningAgent;
  /** The API's URL, or null when it is off. */
  apiUrl: string | null;
  /** Stops the agent and etcd; with stopVms, stops this host's VMs first. */
  stop(opts: { stopVms: boolean }): Promise<void>;
}

const HOST_NAME_UNSAFE = /[^A-Za-z0-9._-]/g;

export async function up(opts: UpOptions): Promise<RunningUp> {
  const { logger, print } = opts;
  const name = opts.name ?? (hostname().replace(HOST_NAME_UNSAFE, '-').slice(0, 63) || 'localhost');
  const pki = join(opts.stateDir, 'pki');
  const made = await initPki(pki, { hosts: [name] });
  if (made.created.length > 0) print(`made etcd's CA and certificates in ${pki}`);
  const etcd = new EtcdProcess({ dataDir: join(opts.stateDir, 'etcd'), logFile: join(opts.stateDir, 'etcd.log'), clientPort: opts.etcdPort, peerPort: opts.etcdPort + 1, tlsDir: pki });
  print(`starting etcd on 127.0.0.1:${opts.etcdPort}, TLS with client certificates and users (data in ${join(opts.stateDir, 'etcd')})`);
  try {
    await etcd.start();
  } catch (err) {
    throw new DroverError('SPAWN_FAILED', `${errorMessage(err)} Is port ${opts.etcdPort} already in use? See ${join(opts.stateDir, 'etcd.log')}.`.replace('.. ', '. '));
  }
  const admin = pkiFiles(pki, 'admin');
  const client = createEtcdClient([etcd.endpoint], { tls: admin });
  try {
    await setupAuth(client, { keys: keySpace(opts.prefix), hosts: [name], schedulerHosts: [name] });
  } catch (err) {
    client.close();
    await etcd.stop();
    throw new DroverError('ETCD_UNAVAILABLE', `Could not set up etcd's users and roles: ${errorMessage(err)}`);
  }
  const hostTls = pkiFiles(pki, hostUser(name));
  const agentState = await agentStateDir(opts.stateDir, print);
  const config = mergeConfigLayers([
    {
      source: 'drover up',
      values: {
        name, etcd: [etcd.endpoint], etcd_ca: hostTls.ca, etcd_cert: hostTls.cert, etcd_key: hostTls.key, state_dir: agentState, accel: opts.accel, prefix: opts.prefix, reserved_memory: 512, scheduler: true, console_listen: '127.0.0.1:0',
        // Host paths VMs may use (docs/security.md): the image cache, the embedded image store, the boot dirs and the demo guest's.
        allowed_paths: [...new Set([join(agentState, 'images'), join(opts.stateDir, 'image-store'), ...opts.bootDirs, ...(opts.demo ? [dirname(opts.demo.kernel), dirname(opts.demo.initrd)] : [])])],
      },
    },
  ]);
  let agent: RunningAgent;
  try {
    agent = await startAgent(config, { logger });
  } catch (err) {
    client.close();
    await etcd.stop();
    throw err;
  }
  print(`agent ${name} is up, with the scheduler (state in ${config.state_dir})`);
  const metrics = agent.agent.metricsAddress;
  print(metrics ? `Prometheus metrics: http://${metrics}/metrics` : 'Prometheus metrics: off (metrics_listen, or its port was taken: see the log)');

  const clientFile = join(opts.stateDir, UP_CLIENT_FILE);
  await writeFile(clientFile, `${JSON.stringify({ endpoint: etcd.endpoint, ...admin }, null, 2)}\n`, { mode: 0o600 });
  const repo = new VmRepository(new KvStore(client), keySpace(opts.prefix));
  // The embedded default image store: a directory beside the agent's state (docs/storage.md).
  const imageStore = join(opts.stateDir, 'image-store');
  if (await setDefaultImageStore(new KvStore(client), keySpace(opts.prefix), imageStore).catch(() => false)) print(`image store: ${imageStore} (drover image store set changes it)`);
  try {
    if (opts.demo) await ensureDemoVm(repo, name, opts.demo, print);
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'could not start the demo VM');
  }
  let api: RunningApi | null = null;
  if (opts.apiListen !== 'off') {
    try {
      api = await startApi({ endpoints: [etcd.endpoint], etcdTls: pkiFiles(pki, 'api'), prefix: opts.prefix, listen: opts.apiListen, bootDirs: opts.bootDirs, logger });
      await printFirstLogin(new AuthRepository(new KvStore(client), keySpace(opts.prefix)), api.url, print);
    } catch (err) {
      print(`the API did not start: ${errorMessage(err)}`);
    }
  }

  return {
    endpoint: etcd.endpoint,
    agent,
    apiUrl: api?.url ?? null,
    stop: async ({ stopVms }) => {
      await api?.stop();
      if (stopVms) await stopHostVms(repo, name, print).catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'could not stop every VM'));
      client.close();
      await agent.stop();
      await rm(clientFile, { force: true });
      await etcd.stop();
    },
  };
}

/**
 * Where the agent keeps its VMs' files: `<state>/agent`, unless qemu's
 * unprivileged user cannot search the directories above it (a clone in
 * root's 0700 home, as `make run` on a fresh machine): then a directory of
 * its own under /var/lib/drover/up, named by the state dir, so the next
 * `drover up` finds and adopts the same VMs. Never loosens a directory the
 * user owns.
 */
async function agentStateDir(stateDir: string, print: (l: string) => void): Promise<string> {
  const wanted = join(stateDir, 'agent');
  if (process.getuid?.() !== 0) return wanted;
  const user = await lookupQemuUser('drover-qemu').catch(() => null);
  if (!user) return wanted; // the agent's own start says what is missing
  try {
    await checkQemuUserReaches(join(wanted, 'vms'), user);
    return wanted;
  } catch (err) {
    const alt = join(UP_RUN_ROOT, createHash('sha256').update(stateDir).digest('hex').slice(0, 12));
    await mkdir(UP_RUN_ROOT, { recursive: true, mode: 0o711 });
    const blocked = / (\/\S*) has mode (\d+);/.exec(errorMessage(err));
    print(`VM files in ${alt}: ${blocked ? `${blocked[1]} has mode ${blocked[2]}, which` : 'a directory above the state dir is one that'} qemu's user ${user.name} cannot search.`);
    return alt;
  }
}

const UP_RUN_ROOT = '/var/lib/drover/up';

/**
 * The first start creates the `admin` user (no password: never a fixed
 * default) and every start prints a one-time login link for it, the token
 * in the URL fragment so it never reaches a server log (Jupyter's way).
 */
async function printFirstLogin(auth: AuthRepository, url: string, print: (l: string) => void): Promise<void> {
  const now = new Date();
  if ((await auth.listUsers()).length === 0) {
    await addUser(auth, { name: 'admin', role: 'admin', createdBy: 'drover up', now });
    print('created the user admin (role admin, no password)');
  }
  if (!(await auth.getUser('admin'))) {
    print(`API: ${url} (sign in as one of your users; drover token create --user NAME makes a token)`);
    return;
  }
  const link = await createLoginLink(auth, 'admin', now);
  print('');
  print(`Web dashboard and API: ${url}`);
  print(`  one-time login (admin, valid ${LINK_TTL_SECONDS / 60} min, works once): ${url}/#login=${link}`);
  print('  a permanent API token:   TOKEN=$(bin/drover token create --user admin)   # shown once');
  print(`  then:                    curl -H "Authorization: Bearer $TOKEN" ${url}/api/v1/vms`);
}

async function ensureDemoVm(repo: VmRepository, host: string, boot: { kernel: string; initrd: string }, print: (l: string) => void): Promise<void> {
  const { vms } = await repo.list();
  let demo = vms.find((v) => v.parsed.ok && v.parsed.value.name === 'demo');
  if (!demo) {
    const uuid = randomUUID();
    await repo.create(uuid, {
      uuid,
      name: 'demo',
      owner: 'demo',
      host,
      status: 'REQUESTED_NEW',
      spec: { vcpus: 1, memory: 128, boot: { ...boot, cmdline: 'console=tty0 console=ttyS0' }, nics: [{ network: 'user' }], vnc: 'unix', restart: 'always' },
    });
    print(`created the demo VM (uuid ${uuid})`);
    demo = (await repo.get(uuid)) ?? undefined;
  } else if (demo.parsed.ok && (demo.parsed.value.status === 'STOP' || demo.parsed.value.status === 'KILLED')) {
    await repo.update(demo.uuid, (cur) => ({ ...(rawObject(cur.raw) ?? {}), status: 'REQUESTED_START' }));
  }
  if (!demo) return;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const cur = await repo.get(demo.uuid);
    const rec = cur?.parsed.ok ? cur.parsed.value : null;
    if (rec?.status === 'RUNNING') {
      print('');
      print(`demo VM is RUNNING (uuid ${demo.uuid}, qemu pid ${rec.runtime?.pid ?? '?'}). Where to look, from another terminal:`);
      print('  bin/drover vm list');
      print('  bin/drover vm get demo');
      print('  bin/drover host list');
      print('  bin/drover scan                   # every VM with its CPU load, memory, disk and network rates');
      print('  bin/drover vm events -f           # the event stream, following');
      print('  bin/drover vm console demo        # the guest\'s serial console (Ctrl-] detaches)');
      print(`  tail -f ${rec.runtime?.serial_log ?? '(serial log)'}     # everything it printed`);
      print('  the dashboard (link above): the machines live, the demo VM\'s page, its VNC and serial consoles');
      print('Ctrl-C stops drover; VMs keep running and are adopted by the next `make run` (use --stop-vms to stop them).');
      return;
    }
    if (rec?.status === 'ERROR') {
      print(`demo VM failed: ${rec.error ?? 'unknown error'}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  print('demo VM did not reach RUNNING within 60 s; see `bin/drover vm log demo`.');
}

async function stopHostVms(repo: VmRepository, host: string, print: (l: string) => void): Promise<void> {
  const { vms } = await repo.list();
  const mine = vms.filter((v) => v.parsed.ok && v.parsed.value.host === host && ['RUNNING', 'STARTING'].includes(v.parsed.value.status ?? ''));
  for (const vm of mine) {
    await repo.update(vm.uuid, (cur) => ({ ...(rawObject(cur.raw) ?? {}), status: 'TO_STOP' }));
  }
  if (mine.length > 0) print(`stopping ${mine.length} VM(s)...`);
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    const states = await Promise.all(mine.map((v) => repo.get(v.uuid)));
    if (states.every((s) => !s || !s.parsed.ok || ['STOP', 'KILLED', 'ERROR'].includes(s.parsed.value.status ?? ''))) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}
