/**
 * What the benchmark reads from /proc and about the machine: a process's
 * resident memory and CPU time, and the versions that explain the figures.
 * Every external program is run with an argv array (never a shell).
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** VmRSS of a process, in KiB; null when it is gone. */
export async function rssKiB(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** utime + stime of a process (all its threads), in clock ticks; null when it is gone. */
export async function cpuTicks(pid: number): Promise<number | null> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces: count fields from the last ')'.
    const rest = text.slice(text.lastIndexOf(')') + 1).trim().split(/\s+/);
    // rest[0] is field 3, so field N is rest[N - 3]: utime is 14, stime 15.
    return Number(rest[14 - 3]) + Number(rest[15 - 3]);
  } catch {
    return null;
  }
}

/** The machine's busy share of all CPUs over `msec`, in percent, from /proc/stat. */
export async function cpuBusyPct(msec = 1000): Promise<number> {
  const read = async (): Promise<{ busy: number; total: number }> => {
    const v = ((await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
  };
  const a = await read();
  await new Promise((r) => setTimeout(r, msec));
  const b = await read();
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100;
}

let clkTck: number | null = null;

/** Clock ticks per second (USER_HZ), from getconf; 100 when that fails. */
export async function clockTicksPerSecond(): Promise<number> {
  if (clkTck !== null) return clkTck;
  try {
    const { stdout } = await run('getconf', ['CLK_TCK']);
    clkTck = Number(stdout.trim()) || 100;
  } catch {
    clkTck = 100;
  }
  return clkTck;
}

/** Pids of every process whose program matches `program` and whose argv mentions `needle`. */
export async function pidsMentioning(program: RegExp, needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const prog = cmd.split('\0')[0] ?? '';
    if (program.test(prog) && cmd.includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

/** Pids of every qemu-system-* process whose argv mentions `needle`. */
export function qemuPidsMentioning(needle: string): Promise<number[]> {
  return pidsMentioning(/(^|\/)qemu-system-/, needle);
}

/** SIGKILLs every qemu whose argv mentions `needle` (the benchmark's temp dir); returns how many. */
export async function killQemusMentioning(needle: string): Promise<number> {
  const pids = await qemuPidsMentioning(needle);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids.length;
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  ramMiB: number;
  kernel: string;
  qemu: string;
  etcd: string;
  node: string;
  kvm: boolean;
  drover: string;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args);
    return stdout.split('\n')[0]?.trim() ?? '';
  } catch (err) {
    return `unknown (${(err as Error).message.split('\n')[0]})`;
  }
}

export async function machineInfo(qemuBinary: string, repoRoot: string): Promise<MachineInfo> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const kvm = await stat('/dev/kvm').then((st) => st.isCharacterDevice(), () => false);
  const commit = await firstLine('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']);
  let dirty = '';
  try {
    const { stdout } = await run('git', ['-C', repoRoot, 'status', '--porcelain', '--', 'src']);
    const n = stdout.split('\n').filter((l) => l.trim() !== '').length;
    if (n > 0) dirty = ` + ${n} uncommitted file(s) in src/`;
  } catch {
    // not a git checkout
  }
  return {
    cpuModel: model,
    cores: os.cpus().length,
    ramMiB: Math.round(os.totalmem() / 1024 / 1024),
    kernel: `${os.type()} ${os.release()}`,
    qemu: await firstLine(qemuBinary, ['--version']),
    etcd: await firstLine('etcd', ['--version']),
    node: process.version,
    kvm,
    drover: `${commit}${dirty}`,
  };
}
