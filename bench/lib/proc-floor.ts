/**
 * The floor of collection (issue 5's benchmark): a bare Node process that,
 * once per interval, reads for every given qemu pid the /proc files a
 * collector needs (`stat` for CPU time and start time, `status` for VmRSS),
 * each tap's sysfs counters
 * (`/sys/class/net/TAP/statistics/{rx,tx}_{bytes,packets}`) and the host's
 * `/proc/meminfo`, `/proc/loadavg` and a statfs of the state dir, and parses
 * the figures it would report, each file with a synchronous open/read/close
 * (the cheapest way short of keeping descriptors open). Nothing else: no QMP (block stats, balloon),
 * no etcd, no Prometheus registry, no logging.
 *
 * Between those, every CHECK_MS, it reads each pid's `stat` alone, as the
 * agent's process check does (process_check_interval).
 *
 * As a script: `node dist/bench/lib/proc-floor.js INTERVAL_MS CHECK_MS
 * STATE_DIR PID[,TAP...]...`; startProcFloor() spawns it with an argv array.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export interface ProcFloor {
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Spawns the floor reader for `targets` (qemu pid and its taps): everything every `intervalMs`, `stat` every `checkMs`. */
export function startProcFloor(intervalMs: number, checkMs: number, stateDir: string, targets: ReadonlyArray<{ pid: number; taps: readonly string[] }>): ProcFloor {
  const args = [fileURLToPath(import.meta.url), String(intervalMs), String(checkMs), stateDir, ...targets.map((t) => [String(t.pid), ...t.taps].join(','))];
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

const scratch = Buffer.alloc(64 * 1024);

/** A small /proc or sysfs file in one open/read/close, no thread pool, no allocation but the string. */
function readSmall(path: string): string {
  const fd = openSync(path, 'r');
  try {
    return scratch.toString('latin1', 0, readSync(fd, scratch, 0, scratch.length, 0));
  } finally {
    closeSync(fd);
  }
}

function readTarget(pid: number, taps: readonly string[]): Figures | null {
  try {
    const stat = readSmall(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = readSmall(`/proc/${pid}/status`);
    const net = taps.flatMap((tap) => ['rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets'].map((c) => Number(readSmall(`/sys/class/net/${tap}/statistics/${c}`))));
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
  const [meminfo, loadavg, fs] = [readSmall('/proc/meminfo'), readSmall('/proc/loadavg'), await statfs(stateDir)];
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
  return [kib('MemTotal'), kib('MemAvailable'), kib('Cached'), ...loadavg.split(' ').slice(0, 3).map(Number), fs.bavail * fs.bsize];
}

async function run(intervalMs: number, checkMs: number, stateDir: string, targets: Array<{ pid: number; taps: string[] }>): Promise<void> {
  let last: unknown = null;
  const tick = async (): Promise<void> => {
    const [host, figures] = [await readHost(stateDir), targets.map((t) => readTarget(t.pid, t.taps))];
    last = { host, figures }; // kept, as a collector keeps its latest sample
  };
  const check = (): void => {
    const alive = targets.map((t) => {
      try {
        const stat = readSmall(`/proc/${t.pid}/stat`);
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        return null;
      }
    });
    last = { ...(last as object), alive };
  };
  await tick();
  const timers = [setInterval(() => void tick(), intervalMs), setInterval(check, checkMs)];
  process.once('SIGTERM', () => {
    for (const t of timers) clearInterval(t);
    process.exit(0);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [interval, checkInterval, stateDir, ...rest] = process.argv.slice(2);
  const intervalMs = Number(interval);
  const checkMs = Number(checkInterval);
  if (!(intervalMs > 0) || !(checkMs > 0) || stateDir === undefined) {
    process.stderr.write('usage: proc-floor.js INTERVAL_MS CHECK_MS STATE_DIR PID[,TAP...]...\n');
    process.exit(2);
  }
  const targets = rest.map((r) => {
    const [pid, ...taps] = r.split(',');
    return { pid: Number(pid), taps };
  });
  run(intervalMs, checkMs, stateDir, targets).catch((err: unknown) => {
    process.stderr.write(`proc-floor: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
