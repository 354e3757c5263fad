/**
 * The floor of collection (issue 5's benchmark): a bare Node process that,
 * once per interval, reads for every given qemu pid the /proc files a
 * collector needs (`stat` for CPU time and start time, `status` for VmRSS),
 * each tap's sysfs counters
 * (`/sys/class/net/TAP/statistics/{rx,tx}_{bytes,packets}`) and the host's
 * `/proc/meminfo`, `/proc/loadavg` and a statfs of the state dir, and parses
 * the figures it would report. Nothing else: no QMP (block stats, balloon),
 * no etcd, no Prometheus registry, no logging.
 *
 * As a script: `node dist/bench/lib/proc-floor.js INTERVAL_MS STATE_DIR
 * PID[,TAP...]...`; startProcFloor() spawns it with an argv array.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, statfs } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export interface ProcFloor {
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Spawns the floor reader for `targets` (qemu pid and its taps), reading every `intervalMs`. */
export function startProcFloor(intervalMs: number, stateDir: string, targets: ReadonlyArray<{ pid: number; taps: readonly string[] }>): ProcFloor {
  const args = [fileURLToPath(import.meta.url), String(intervalMs), stateDir, ...targets.map((t) => [String(t.pid), ...t.taps].join(','))];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (child.pid === undefined) throw new Error('could not start the floor reader');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    pid: child.pid,
    child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

interface Figures {
  cpuTicks: number;
  rssKiB: number;
  net: number[];
}

async function readTarget(pid: number, taps: readonly string[]): Promise<Figures | null> {
  try {
    const [stat, status] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/status`, 'utf8')]);
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const net = await Promise.all(
      taps.flatMap((tap) => ['rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets'].map((c) => readFile(`/sys/class/net/${tap}/statistics/${c}`, 'utf8').then(Number, () => 0))),
    );
    return {
      cpuTicks: Number(f[11]) + Number(f[12]),
      rssKiB: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0),
      net,
    };
  } catch {
    return null; // the process is gone
  }
}

async function readHost(stateDir: string): Promise<number[]> {
  const [meminfo, loadavg, fs] = await Promise.all([readFile('/proc/meminfo', 'utf8'), readFile('/proc/loadavg', 'utf8'), statfs(stateDir)]);
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
  return [kib('MemTotal'), kib('MemAvailable'), kib('Cached'), ...loadavg.split(' ').slice(0, 3).map(Number), fs.bavail * fs.bsize];
}

async function run(intervalMs: number, stateDir: string, targets: Array<{ pid: number; taps: string[] }>): Promise<void> {
  let last: unknown = null;
  const tick = async (): Promise<void> => {
    const [host, figures] = await Promise.all([readHost(stateDir), Promise.all(targets.map((t) => readTarget(t.pid, t.taps)))]);
    last = { host, figures }; // kept, as a collector keeps its latest sample
  };
  await tick();
  const timer = setInterval(() => void tick(), intervalMs);
  process.once('SIGTERM', () => {
    clearInterval(timer);
    void last;
    process.exit(0);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [interval, stateDir, ...rest] = process.argv.slice(2);
  const intervalMs = Number(interval);
  if (!(intervalMs > 0) || stateDir === undefined) {
    process.stderr.write('usage: proc-floor.js INTERVAL_MS STATE_DIR PID[,TAP...]...\n');
    process.exit(2);
  }
  const targets = rest.map((r) => {
    const [pid, ...taps] = r.split(',');
    return { pid: Number(pid), taps };
  });
  run(intervalMs, stateDir, targets).catch((err: unknown) => {
    process.stderr.write(`proc-floor: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
