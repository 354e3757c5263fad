/**
 * An independent reading of a qemu argv, as the kernel holds it
 * (/proc/<pid>/cmdline), for the fuzz scenario: what a record's strings
 * could have smuggled into qemu shows here, whatever drover meant to build.
 *
 * Option values are split the way qemu's QemuOpts parser splits them (a
 * lone "," separates, ",," is a literal comma), so an injected
 * `,file=/etc/passwd` shows up as an extra or repeated key. Checked: every
 * option is one drover uses, every key of a structured option is one drover
 * writes and none is repeated, the VM name and uuid match the contract's
 * patterns, no element but the guest's kernel command line holds a control
 * character, and every file path is absolute without a ".." segment; when
 * `allowedDirs` is given, every file path lies under one of them.
 *
 * Confined qemu (docs/security.md) gets its files as descriptors: disks as
 * `-add-fd fd=N,set=S` with JSON `-blockdev`s naming `/dev/fdset/S` (and
 * each backing node explicitly), kernel and initrd as `/proc/self/fd/N`.
 * Those names are checked for their exact form: no host path reaches qemu.
 */
import { UUID_RE, VM_NAME_RE } from '../../../src/contract/vm-record.js';

/** Options that take no value. */
const FLAGS = new Set(['-nodefaults', '-no-user-config']);

/** The keys drover writes, per structured option ('' is the implied first value, e.g. `q35`). */
const KEYS: Record<string, ReadonlySet<string>> = {
  '-name': new Set(['guest', 'debug-threads']),
  '-machine': new Set(['', 'accel']),
  '-chardev': new Set(['', 'id', 'path', 'server', 'wait', 'logfile']),
  '-mon': new Set(['chardev', 'mode']),
  '-blockdev': new Set(),
  '-device': new Set(['', 'drive', 'id', 'bootindex', 'netdev', 'mac']),
  '-netdev': new Set(['', 'id', 'ifname', 'script', 'downscript']),
  '-vnc': new Set(['', 'to', 'password', 'tls-creds']),
  '-add-fd': new Set(['fd', 'set']),
  '-object': new Set(['', 'id', 'dir', 'endpoint', 'verify-peer']),
};
/** The descriptor names a confined qemu is given instead of host paths. */
const FD_NAME = /^\/(dev\/fdset|proc\/self\/fd)\/\d+$/;
/** The keys of each -blockdev driver drover uses: the file layer names the file, the format layer only a node. */
const BLOCKDEV_KEYS: Record<string, ReadonlySet<string>> = {
  file: new Set(['driver', 'node-name', 'filename', 'read-only']),
  raw: new Set(['driver', 'node-name', 'file', 'read-only']),
  qcow2: new Set(['driver', 'node-name', 'file', 'read-only', 'backing']),
  rbd: new Set(['driver', 'node-name', 'pool', 'image', 'conf', 'user']),
};
/** Options with a plain value. */
const PLAIN = new Set(['-uuid', '-smp', '-m', '-display', '-serial', '-kernel', '-initrd', '-append', '-cpu', '-incoming', '-accel', '-sandbox']);
/** Keys and options whose value is a host file. */
const PATH_KEYS = new Set(['path', 'logfile', 'filename']);
const PATH_OPTIONS = new Set(['-kernel', '-initrd']);

/** Splits a QemuOpts value as qemu does: [key, value] pairs, '' as the key of a first bare value. */
export function splitQemuOpts(value: string): Array<[string, string]> {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === ',' && value[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (c === ',') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts.map((p, i) => {
    const eq = p.indexOf('=');
    return eq < 0 ? [i === 0 ? '' : p, i === 0 ? p : ''] : [p.slice(0, eq), p.slice(eq + 1)];
  });
}

const hasControl = (s: string): boolean => [...s].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);

function pathProblem(path: string, allowedDirs: readonly string[] | null): string | null {
  if (FD_NAME.test(path)) return null; // a descriptor the agent opened and checked, not a path
  if (!path.startsWith('/') || path.split('/').includes('..')) return `path ${JSON.stringify(path)} is not absolute or has a ".." segment`;
  if (allowedDirs && !allowedDirs.some((d) => path.startsWith(d.endsWith('/') ? d : `${d}/`))) return `path ${JSON.stringify(path)} is outside the allowed directories`;
  return null;
}

/** A JSON -blockdev as [key, value] pairs (values as strings; null as "null"), or why it is not one drover writes. */
function blockdevJson(value: string): { pairs: Array<[string, string]> } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { error: 'is not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { error: 'is not a JSON object' };
  const pairs: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(parsed)) {
    if (v !== null && typeof v !== 'string' && typeof v !== 'boolean') return { error: `key ${JSON.stringify(k)} holds a nested value` };
    pairs.push([k, String(v)]);
  }
  return { pairs };
}

/** Every host file path the argv names (for the canary checks). */
export function argvPaths(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const opt = argv[i]!;
    const value = argv[i + 1] ?? '';
    if (PATH_OPTIONS.has(opt)) out.push(value);
    else if (opt in KEYS) for (const [k, v] of splitQemuOpts(opt === '-vnc' ? value.replace(/^unix:/, 'path=') : value)) if (PATH_KEYS.has(k)) out.push(v);
  }
  return out;
}

/** What is wrong with one qemu argv (empty: nothing). `allowedDirs` null: paths only need to be absolute and without "..". */
export function argvProblems(argv: readonly string[], allowedDirs: readonly string[] | null): string[] {
  const problems: string[] = [];
  for (let i = 1; i < argv.length; i++) {
    const opt = argv[i]!;
    if (FLAGS.has(opt)) continue;
    const value = argv[i + 1];
    i++;
    if (value === undefined) {
      problems.push(`option ${opt} has no value`);
      continue;
    }
    if (opt !== '-append' && hasControl(value)) problems.push(`${opt} ${JSON.stringify(value)} holds a control character`);
    if (PLAIN.has(opt)) {
      if (opt === '-uuid' && !UUID_RE.test(value)) problems.push(`-uuid ${JSON.stringify(value)} is not a uuid`);
      if ((opt === '-smp' || opt === '-m') && !/^\d+$/.test(value)) problems.push(`${opt} ${JSON.stringify(value)} is not a number`);
      if (PATH_OPTIONS.has(opt)) {
        const p = pathProblem(value, allowedDirs);
        if (p) problems.push(`${opt}: ${p}`);
      }
      continue;
    }
    const allowed = KEYS[opt];
    if (!allowed) {
      problems.push(`unexpected option ${opt} ${JSON.stringify(value)}`);
      continue;
    }
    const json = opt === '-blockdev' && value.startsWith('{') ? blockdevJson(value) : null;
    if (json && 'error' in json) {
      problems.push(`-blockdev ${JSON.stringify(value)}: ${json.error}`);
      continue;
    }
    const pairs = json ? json.pairs : splitQemuOpts(opt === '-vnc' ? value.replace(/^unix:/, 'path=') : value);
    if (json && opt === '-blockdev') {
      const name = pairs.find(([k]) => k === 'filename')?.[1];
      if (name !== undefined && !FD_NAME.test(name)) problems.push(`-blockdev ${JSON.stringify(value)}: a JSON blockdev names ${JSON.stringify(name)}, not a descriptor`);
    }
    const driver = opt === '-blockdev' ? pairs.find(([k]) => k === 'driver')?.[1] : undefined;
    const keys = driver !== undefined ? (BLOCKDEV_KEYS[driver] ?? new Set<string>()) : allowed;
    if (driver !== undefined && !(driver in BLOCKDEV_KEYS)) problems.push(`-blockdev ${JSON.stringify(value)}: unexpected driver ${JSON.stringify(driver)}`);
    const seen = new Set<string>();
    for (const [k, v] of pairs) {
      if (opt === '-vnc' && k === 'path') {
        const p = pathProblem(v, allowedDirs);
        if (p) problems.push(`-vnc: ${p}`);
        continue;
      }
      if (driver !== undefined && k === 'backing' && v !== 'null' && !/^disk\d+-b\d+$/.test(v)) problems.push(`-blockdev ${JSON.stringify(value)}: backing= names ${JSON.stringify(v)}, not a node`);
      if (driver !== undefined && k === 'file' && !/^disk\d+(-b\d+)?-file$/.test(v)) problems.push(`-blockdev ${JSON.stringify(value)}: file= names ${JSON.stringify(v)}, not a node`);
      if (!keys.has(k)) problems.push(`${opt} ${JSON.stringify(value)}: unexpected key ${JSON.stringify(k)}`);
      if (seen.has(k)) problems.push(`${opt} ${JSON.stringify(value)}: key ${JSON.stringify(k)} given twice`);
      seen.add(k);
      if (PATH_KEYS.has(k)) {
        const p = pathProblem(v, allowedDirs);
        if (p) problems.push(`${opt} ${k}: ${p}`);
      }
      if (opt === '-name' && k === 'guest' && !VM_NAME_RE.test(v)) problems.push(`-name guest=${JSON.stringify(v)} is not a valid VM name`);
    }
  }
  return problems;
}
