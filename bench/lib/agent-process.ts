/**
 * `bin/drover agent` as a subprocess (argv array, as an operator runs it),
 * with a config file holding only the keys a benchmark sets, so every other
 * key keeps drover's default. Also: stopping it, and killing what agents
 * leave behind on purpose (qemu processes and fencing watchdogs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { KvStore } from '../../src/store/kv-store.js';
import { pidsMentioning } from './procfs.js';

export interface AgentProc {
  name: string;
  stateDir: string;
  logFile: string;
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
}

function tomlValue(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

export interface StartAgentOptions {
  /** Write a V8 CPU profile of the agent into this folder when it exits. */
  cpuProfDir?: string;
}

/** Starts `drover agent --name NAME` with state and config under `dir/NAME`. */
export async function startAgentProc(
  droverBin: string,
  dir: string,
  name: string,
  endpoint: string,
  config: Record<string, unknown>,
  opts: StartAgentOptions = {},
): Promise<AgentProc> {
  const stateDir = join(dir, name, 'state');
  await mkdir(stateDir, { recursive: true });
  // qemu runs as drover-qemu (docs/security.md): it must reach its run dir, and may use the bench's files and the test guest.
  await chmod(dir, 0o711);
  const guestDir = join(dirname(dirname(droverBin)), 'build', 'guest');
  const full = { allowed_paths: [dir, guestDir], ...config };
  const configFile = join(dir, name, 'agent.toml');
  await writeFile(configFile, Object.entries(full).map(([k, v]) => `${k} = ${tomlValue(v)}`).join('\n') + '\n');
  const logFile = join(dir, name, 'agent.log');
  const fh = await open(logFile, 'a');
  const args = ['agent', '--etcd', endpoint, '--name', name, '--state-dir', stateDir, '--config', configFile, '--accel', 'tcg'];
  // bin/drover is `exec node dist/src/cli/main.js`; for a CPU profile node is run directly,
  // as --cpu-prof is not allowed in NODE_OPTIONS.
  const main = join(dirname(dirname(droverBin)), 'dist', 'src', 'cli', 'main.js');
  const child = opts.cpuProfDir
    ? spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, main, ...args], { stdio: ['ignore', fh.fd, fh.fd] })
    : spawn(droverBin, args, { stdio: ['ignore', fh.fd, fh.fd] });
  await fh.close();
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  if (child.pid === undefined) {
    await exited;
    throw new Error(`could not start ${droverBin}`);
  }
  return { name, stateDir, logFile, child, pid: child.pid, exited };
}

/** SIGCONT (in case it is frozen), SIGTERM, SIGKILL after `graceMs`. */
export async function stopAgentProc(agent: AgentProc, graceMs = 5000): Promise<void> {
  const { child } = agent;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await agent.exited;
  clearTimeout(timer);
}

export async function logTail(path: string, lines = 20): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** Resolves once the agent's liveness key exists (it registered), with the time it took. */
export async function waitAlive(agent: AgentProc, kv: KvStore, aliveKey: string, timeoutMs = 30_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`agent ${agent.name} exited during start-up:\n${await logTail(agent.logFile)}`);
    if (await kv.get(aliveKey)) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`agent ${agent.name} did not register within ${timeoutMs} ms:\n${await logTail(agent.logFile)}`);
}

/** SIGKILLs every qemu and every fencing watchdog whose argv mentions `dir` (both outlive their agents by design); returns how many. */
export async function killLeftovers(dir: string): Promise<number> {
  const doomed = await pidsMentioning(/(^|\/)qemu-system-/, dir);
  for (const pid of await pidsMentioning(/(^|\/)node(js)?$/, dir)) {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.includes('watchdog')) doomed.push(pid);
  }
  for (const pid of doomed) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return doomed.length;
}
