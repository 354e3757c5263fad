/**
 * What /proc says about processes: enough to tell whether a saved pid is still
 * the same qemu (pid + start time + argv), and to find every qemu on the host.
 *
 * A pid alone identifies nothing: after a reboot or enough forks another
 * process can have it. Field 22 of /proc/PID/stat (start time in clock ticks
 * since boot) does not change for a process's life, so (pid, startTime) does.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { unescapeOptValue } from './build-qemu-args.js';

export interface ProcStat {
  /** One-letter state: R, S, D, Z (zombie), T, ... */
  state: string;
  /** Start time in clock ticks since boot (field 22). */
  startTime: number;
  /** CPU time in user and in kernel mode, in clock ticks (fields 14 and 15). */
  utime: number;
  stime: number;
}

/**
 * Clock ticks per second of /proc's times (USER_HZ). The kernel fixes it at
 * 100 on every Linux architecture drover runs on, whatever CONFIG_HZ is;
 * asking getconf(1) would spawn a process for a constant.
 */
export const USER_HZ = 100;

/**
 * Parses /proc/PID/stat. The second field (comm) is in parentheses and may
 * itself contain spaces and parentheses, so fields are counted from the last
 * ')' in the line.
 */
export function parseProcStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const rest = text.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const state = rest[0];
  const startTime = Number(rest[22 - 3]);
  const utime = Number(rest[14 - 3]);
  const stime = Number(rest[15 - 3]);
  if (state === undefined || ![startTime, utime, stime].every(Number.isSafeInteger)) return null;
  return { state, startTime, utime, stime };
}

export async function readProcStat(pid: number): Promise<ProcStat | null> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** Resident memory in bytes from the text of /proc/PID/status (VmRSS, in kB: no page size to know). */
export function parseVmRss(status: string): number | null {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : null;
}

/** The process's start time (ticks since boot), or null when it does not exist. */
export async function readStartTime(pid: number): Promise<number | null> {
  return (await readProcStat(pid))?.startTime ?? null;
}

/** The process's argv, or null when it does not exist (or is a zombie/kernel thread with none). */
export async function readCmdline(pid: number): Promise<string[] | null> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (raw === '') return null;
    const argv = raw.split('\0');
    if (argv.at(-1) === '') argv.pop();
    return argv;
  } catch {
    return null;
  }
}

/** True while the process exists and has not exited (a zombie counts as gone). */
export async function isAlive(pid: number): Promise<boolean> {
  const stat = await readProcStat(pid);
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X';
}

/** True when `pid` is alive and is still the process that started at `startTime`. */
export async function isSameProcess(pid: number, startTime: number): Promise<boolean> {
  const stat = await readProcStat(pid);
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X' && stat.startTime === startTime;
}

export interface QemuProcess {
  pid: number;
  argv: string[];
  uuid?: string;
  name?: string;
}

/** True for an argv whose program is qemu-system-<arch>. */
export function isQemuArgv(argv: readonly string[]): boolean {
  const prog = argv[0];
  return prog !== undefined && basename(prog).startsWith('qemu-system-');
}

/** `-uuid U` and `-name guest=N,...` (or the legacy `-name N`) from a qemu argv. */
export function parseQemuIdentity(argv: readonly string[]): { uuid?: string; name?: string } {
  const out: { uuid?: string; name?: string } = {};
  for (let i = 1; i < argv.length - 1; i++) {
    const opt = argv[i]?.replace(/^--/, '-');
    const value = argv[i + 1] ?? '';
    if (opt === '-uuid') out.uuid = value.toLowerCase();
    if (opt === '-name') {
      const name = parseNameOption(value);
      if (name !== undefined) out.name = name;
    }
  }
  return out;
}

/** The guest name in a `-name` value: `guest=N,debug-threads=on`, `N,process=p` or plain `N`. */
function parseNameOption(value: string): string | undefined {
  const parts = splitOptList(value);
  for (const [i, part] of parts.entries()) {
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (i === 0) return unescapeOptValue(part);
      continue;
    }
    if (part.slice(0, eq) === 'guest') return unescapeOptValue(part.slice(eq + 1));
  }
  return undefined;
}

/** Splits a qemu option list on single commas, leaving doubled ones (escaped) in place. */
function splitOptList(value: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === ',' && value[i + 1] === ',') {
      cur += ',,';
      i++;
    } else if (ch === ',') {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

/** Every live qemu-system-* process on the host, with its -uuid and -name when present. */
export async function listQemuProcesses(): Promise<QemuProcess[]> {
  const entries = await readdir('/proc');
  const out: QemuProcess[] = [];
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (e) => {
        const pid = Number(e);
        const argv = await readCmdline(pid);
        if (!argv || !isQemuArgv(argv)) return;
        out.push({ pid, argv, ...parseQemuIdentity(argv) });
      }),
  );
  return out.sort((a, b) => a.pid - b.pid);
}

/** Tap devices named in live qemus' `-netdev tap,...,ifname=X` options → the qemu's pid. */
export function tapsInUse(procs: readonly QemuProcess[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of procs) {
    p.argv.forEach((arg, i) => {
      if (p.argv[i - 1] !== '-netdev' || !arg.startsWith('tap,')) return;
      for (const part of splitOptList(arg)) {
        if (part.startsWith('ifname=')) out.set(unescapeOptValue(part.slice('ifname='.length)), p.pid);
      }
    });
  }
  return out;
}
