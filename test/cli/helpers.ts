/**
 * Runs the real `bin/drover` as a subprocess (argv, never a shell) against a
 * test etcd, each test under its own key prefix.
 */
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { keySpace, type KeySpace } from '../../src/contract/keys.js';
import { KvStore } from '../../src/store/kv-store.js';
import type { TestEtcd } from '../helpers/etcd.js';

/** dist/test/cli/helpers.js -> <repo>/bin/drover */
export const DROVER_BIN = fileURLToPath(new URL('../../../bin/drover', import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  stdin?: string;
  env?: Record<string, string>;
  /** Kill drover after this long; 60 s by default (commands with --wait need more). */
  timeoutMs?: number;
}

/** The test's own environment without DROVER_* variables (but the suite etcd's admin certificate), so flags and env are what a test says. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('DROVER_') || /^DROVER_ETCD_(CA|CERT|KEY)$/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

export function runDrover(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(DROVER_BIN, [...args], { env: cleanEnv(opts.env), timeout: opts.timeoutMs ?? 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(opts.stdin ?? '');
  });
}

/** A drover bound to one etcd and one fresh prefix, plus direct store access for the test. */
export interface Cluster {
  prefix: string;
  keys: KeySpace;
  kv: KvStore;
  drover(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  putVm(record: Record<string, unknown>): Promise<void>;
  getVm(uuid: string): Promise<Record<string, unknown> | null>;
}

export function cluster(etcd: TestEtcd): Cluster {
  const prefix = etcd.newPrefix();
  const keys = keySpace(prefix);
  const kv = new KvStore(etcd.client);
  return {
    prefix,
    keys,
    kv,
    drover: (args, opts) => runDrover([...args, '--etcd', etcd.endpoint, '--prefix', prefix], opts),
    putVm: (record) => kv.put(keys.vm(String(record.uuid)), JSON.stringify(record)),
    getVm: async (uuid) => {
      const e = await kv.get(keys.vm(uuid));
      return e ? (JSON.parse(e.raw) as Record<string, unknown>) : null;
    },
  };
}

export function vmRecord(uuid: string, name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { uuid, name, host: 'hv1', status: 'RUNNING', spec: { vcpus: 1, memory: 256, disks: [{ image: 'debian-12' }] }, ...extra };
}

/** uuids with chosen prefixes, for prefix and ambiguity tests. */
export function uuidWith(prefix8: string, n = 1): string {
  return `${prefix8}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

/** The JSON a successful run printed; fails with the run's stderr otherwise. */
export function stdoutJson<T>(res: RunResult): T {
  if (res.code !== 0) throw new Error(`drover exited ${res.code}: ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

/** The stdout of a run that must succeed; fails with the run's stderr otherwise. */
export function stdoutText(res: RunResult): string {
  if (res.code !== 0) throw new Error(`drover exited ${res.code}: ${res.stderr}`);
  return res.stdout;
}

export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

/** A drover left running (`scan --watch`, `vm events -f`): its output so far, a wait for a line, and Ctrl-C. */
export interface RunningDrover {
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves once stdout matches; rejects after `timeoutMs` with what was printed. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Sends SIGINT and resolves with the exit code. */
  interrupt(): Promise<number | null>;
  /** Kills it if it still runs (a test's clean-up after a failure). */
  kill(): void;
}

export function spawnDrover(args: readonly string[], opts: { env?: Record<string, string> } = {}): RunningDrover {
  const child = spawn(DROVER_BIN, [...args], { env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of waiters) w();
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    stdout: () => out,
    stderr: () => err,
    waitFor: (pattern, timeoutMs = 20_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!pattern.test(out)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${String(pattern)} in drover's output after ${timeoutMs} ms:\n${out}\nstderr: ${err}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    interrupt: () => {
      child.kill('SIGINT');
      return exited;
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
