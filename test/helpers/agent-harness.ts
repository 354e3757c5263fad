/**
 * Runs real `drover agent` processes (bin/drover, as an operator would)
 * against a real etcd, with a config file of short intervals, and gives
 * tests what they need to drive and observe them through etcd.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keySpace, type KeySpace } from '../../src/contract/keys.js';
import { EventLog, type StoredEvent } from '../../src/store/event-log.js';
import { KvStore } from '../../src/store/kv-store.js';
import { rawObject, VmRepository, type JsonObject } from '../../src/store/vm-repository.js';
import type { TestEtcd } from './etcd.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const DROVER_BIN = join(REPO_ROOT, 'bin', 'drover');
export const GUEST_DIR = join(REPO_ROOT, 'build', 'guest');
export const GUEST = {
  kernel: join(GUEST_DIR, 'vmlinuz'),
  initrd: join(GUEST_DIR, 'initrd.gz'),
  initrdPoweroff: join(GUEST_DIR, 'initrd-poweroff.gz'),
  initrdIgnoreAcpi: join(GUEST_DIR, 'initrd-ignore-acpi.gz'),
};

export interface AgentProcess {
  name: string;
  stateDir: string;
  logFile: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** What a cluster needs of its etcd: one server (test/helpers/etcd.ts) or several members (test/chaos/lib/etcd-cluster.ts). */
/** Any etcd a cluster runs on: the suite's (TLS, auth: authorize and tlsOf) or a chaos scenario's own cluster. */
export type ClusterEtcd = Pick<TestEtcd, 'client' | 'endpoint' | 'newPrefix'> & Partial<Pick<TestEtcd, 'authorize' | 'tlsOf'>>;

export interface Cluster {
  etcd: ClusterEtcd;
  prefix: string;
  keys: KeySpace;
  kv: KvStore;
  repo: VmRepository;
  events: EventLog;
  dir: string;
  /**
   * Starts `drover agent`; `wrap` is an argv the agent's own argv is appended to
   * (`['ip', 'netns', 'exec', NS]`: it execs, so the child's pid is still the agent's).
   */
  startAgent(name: string, opts?: { config?: Record<string, unknown>; stateDir?: string; env?: Record<string, string>; etcd?: string; wrap?: string[] }): Promise<AgentProcess>;
  /** Writes a VM record; fills uuid, host and a bootable spec. Returns the uuid. */
  createVm(fields?: JsonObject, host?: string): Promise<string>;
  /** Compare-and-swap update of a record's fields. */
  patchVm(uuid: string, fields: JsonObject): Promise<void>;
  getVm(uuid: string): Promise<JsonObject | null>;
  waitForVm(uuid: string, test: (vm: JsonObject | null) => boolean, timeoutMs?: number, what?: string): Promise<JsonObject | null>;
  waitForStatus(uuid: string, status: string, timeoutMs?: number): Promise<JsonObject>;
  waitForEvent(test: (e: StoredEvent) => boolean, timeoutMs?: number, what?: string): Promise<StoredEvent>;
  close(): Promise<void>;
}

function tomlValue(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

export async function waitUntil<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** True when the process exists and is not a zombie (a killed qemu whose parent, a frozen agent, has not reaped it). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** CPU seconds (utime + stime, USER_HZ 100) of a process, as a test reads /proc itself. */
export async function procCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[14 - 3]) + Number(f[15 - 3])) / 100;
}

/** The environment without the suite's admin certificate (DROVER_ETCD_*): an agent uses its own host's. */
function withoutEtcdTls(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { DROVER_ETCD_CA: _ca, DROVER_ETCD_CERT: _cert, DROVER_ETCD_KEY: _key, ...rest } = env;
  return rest;
}

export async function startCluster(etcd: ClusterEtcd): Promise<Cluster> {
  const prefix = etcd.newPrefix();
  const keys = keySpace(prefix);
  const kv = new KvStore(etcd.client);
  const repo = new VmRepository(kv, keys);
  const events = new EventLog(kv, keys);
  const dir = await mkdtemp(join(tmpdir(), 'drover-it-'));
  // Searchable (not listable) so qemu, as drover-qemu, reaches its run dirs in the state dirs below (docs/security.md).
  await chmod(dir, 0o711);
  const agents: AgentProcess[] = [];

  const cluster: Cluster = {
    etcd,
    prefix,
    keys,
    kv,
    repo,
    events,
    dir,
    async startAgent(name, opts = {}) {
      const stateDir = opts.stateDir ?? join(dir, `state-${name}`);
      await mkdir(stateDir, { recursive: true });
      const configFile = join(dir, `${name}.toml`);
      const config: Record<string, unknown> = {
        prefix,
        resync_interval: 3,
        heartbeat_interval: 1,
        lease_ttl: 5,
        stop_timeout: 10,
        restart_backoff_min: 0.2,
        restart_backoff_max: 1,
        foreign_scope: 'state-dir',
        reserved_memory: 256,
        // Many agents share this machine: each metrics endpoint on a free port (the log says which).
        metrics_listen: '127.0.0.1:0',
        console_listen: '127.0.0.1:0',
        // The tests' disks and state dirs, and the test guest's kernels (docs/security.md, "Host paths").
        allowed_paths: [dir, GUEST_DIR],
        log_level: 'debug',
        ...opts.config,
      };
      // Each agent is its host's etcd user (host-<name>), with that role's grants only.
      await etcd.authorize?.(prefix, { hosts: [name], schedulerHosts: config.scheduler === true ? [name] : [] });
      const tls = (await etcd.tlsOf?.(`host-${name}`)) ?? null;
      if (tls) Object.assign(config, { etcd_ca: tls.ca, etcd_cert: tls.cert, etcd_key: tls.key });
      await writeFile(configFile, Object.entries(config).map(([k, v]) => `${k} = ${tomlValue(v)}`).join('\n') + '\n');
      const logFile = join(dir, `${name}-${agents.length}.log`);
      const log = await open(logFile, 'a');
      const argv = [DROVER_BIN, 'agent', '--etcd', opts.etcd ?? etcd.endpoint, '--name', name, '--state-dir', stateDir, '--config', configFile, '--accel', 'tcg'];
      const command = [...(opts.wrap ?? []), ...argv];
      const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', log.fd, log.fd], env: { ...withoutEtcdTls(process.env), ...opts.env } });
      await log.close();
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const agent: AgentProcess = {
        name,
        stateDir,
        logFile,
        child,
        exited,
        async kill(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(force);
        },
      };
      agents.push(agent);
      return agent;
    },
    async createVm(fields = {}, host = 'hv1') {
      const uuid = (fields.uuid as string | undefined) ?? randomUUID();
      const record: JsonObject = {
        uuid,
        name: `vm-${uuid.slice(0, 8)}`,
        host,
        status: 'REQUESTED_NEW',
        ...fields,
        spec: {
          vcpus: 1,
          memory: 96,
          boot: { kernel: GUEST.kernel, initrd: GUEST.initrd, cmdline: 'console=ttyS0 quiet' },
          ...((fields.spec as JsonObject | undefined) ?? {}),
        },
      };
      if (!(await repo.create(uuid, record))) throw new Error(`VM ${uuid} exists`);
      return uuid;
    },
    async patchVm(uuid, fields) {
      await repo.update(uuid, (cur) => ({ ...(rawObject(cur.raw) ?? {}), ...fields }));
    },
    async getVm(uuid) {
      const vm = await repo.get(uuid);
      return vm ? rawObject(vm.raw) : null;
    },
    async waitForVm(uuid, test, timeoutMs = 60_000, what = `VM ${uuid}`) {
      let last: JsonObject | null = null;
      try {
        return await waitUntil(async () => {
          last = await cluster.getVm(uuid);
          return test(last) ? last : undefined;
        }, timeoutMs, what);
      } catch (err) {
        throw new Error(`${(err as Error).message}; last record: ${JSON.stringify(last)}`, { cause: err });
      }
    },
    async waitForStatus(uuid, status, timeoutMs = 60_000) {
      return (await cluster.waitForVm(uuid, (vm) => vm?.status === status, timeoutMs, `VM ${uuid} to be ${status}`)) as JsonObject;
    },
    async waitForEvent(test, timeoutMs = 60_000, what = 'an event') {
      return waitUntil(async () => (await events.list()).find(test), timeoutMs, what);
    },
    async close() {
      for (const a of agents) await a.kill('SIGTERM').catch(() => undefined);
      // The agents leave VMs running by design; the tests' VMs go now.
      for (const a of agents) await killQemusUnder(a.stateDir);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** Kills every qemu and watchdog whose argv mentions the directory (both outlive the agents). */
export async function killQemusUnder(dir: string): Promise<void> {
  const { readdir } = await import('node:fs/promises');
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    // qemu processes, and the fencing watchdogs the agents leave beside them.
    if ((cmd.includes('qemu-system') || cmd.includes('watchdog')) && cmd.includes(dir)) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

export async function readSerial(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}

export async function waitForSerialText(path: string, marker: string | RegExp, timeoutMs = 60_000): Promise<string> {
  return waitUntil(async () => {
    const text = await readSerial(path);
    return (typeof marker === 'string' ? text.includes(marker) : marker.test(text)) ? text : undefined;
  }, timeoutMs, `serial log ${path} to show ${String(marker)}`);
}
