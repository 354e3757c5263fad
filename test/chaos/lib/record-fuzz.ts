/**
 * Generated and mutated records for the fuzz scenario, with fast-check:
 * each starts as a valid VM, host, pool or image record and gets 0-3
 * mutations (a field set to a hostile value of the wrong type, a hostile
 * string, a huge number, a field removed, unknown keys added), and some are
 * then broken as text (cut short, a number too big for a double, duplicate
 * keys, not JSON at all) or written under a key whose last segment is not a
 * uuid.
 *
 * Hostile strings name canary files (lib: the scenario checks they are
 * never opened, changed or deleted): `named` ones appear as whole paths, as
 * a user might write them; `injected` ones only inside option-injection
 * strings (`x.raw,file=<canary>`), traversals and control characters,
 * which must never reach qemu as a file of their own.
 */
import fc from 'fast-check';
import { parsePoolRecord } from '../../../src/contract/pool-record.js';

export interface Canaries {
  /** Paths that may appear whole in records (today no allow-list stops them). */
  named: string[];
  /** Paths that appear only inside injection strings: qemu must never open them. */
  injected: string[];
}

export type RecordKind = 'vm' | 'host' | 'pool' | 'image';

export interface FuzzRecord {
  kind: RecordKind;
  /** The key's last segment (a uuid or a name; hostile for some). */
  id: string;
  /** Exactly what is written into etcd. */
  raw: string;
  /** What was done to it, for the report. */
  mutations: string[];
  /** The raw disk file its valid base names (the scenario creates it): each VM its own, so qemu's image locks never meet. */
  disk?: string;
}

export interface FuzzBase {
  hosts: readonly string[];
  kernel: string;
  initrd: string;
  /** A raw disk file under an allowed directory (named in injection strings). */
  disk: string;
  /** The raw disk file of record n, under an allowed directory. */
  diskOf(n: number): string;
  /** Existing files under an allowed directory whose names hold commas and "=" (qemu must open them as named). */
  trickyDisks: readonly string[];
}

const FIELD_PATHS: Record<RecordKind, ReadonlyArray<readonly (string | number)[]>> = {
  vm: [
    ['uuid'], ['name'], ['owner'], ['host'], ['status'], ['error'], ['log'], ['spec'], ['spec', 'vcpus'], ['spec', 'memory'],
    ['spec', 'boot'], ['spec', 'boot', 'kernel'], ['spec', 'boot', 'initrd'], ['spec', 'boot', 'cmdline'], ['spec', 'disks'],
    ['spec', 'disks', 0], ['spec', 'disks', 0, 'path'], ['spec', 'disks', 0, 'format'], ['spec', 'disks', 0, 'image'], ['spec', 'disks', 0, 'size'],
    ['spec', 'disks', 0, 'rbd'], ['spec', 'nics'], ['spec', 'nics', 0, 'network'], ['spec', 'nics', 0, 'mac'], ['spec', 'vnc'], ['spec', 'restart'],
    ['spec', 'failover'], ['spec', 'nodes'], ['spec', 'stop_timeout'], ['runtime'], ['runtime', 'pid'], ['migration'], ['migration', 'target'],
    ['snapshot_request'], ['backup_request'], ['force_stop'], ['pool'], ['pending_reason'],
  ],
  host: [['name'], ['hostid'], ['ip'], ['status'], ['cpus'], ['memory'], ['reserved_memory'], ['free_memory'], ['version'], ['heartbeat_at'], ['console']],
  pool: [['name'], ['template'], ['template', 'spec'], ['template', 'spec', 'memory'], ['template', 'spec', 'boot', 'kernel'], ['hosts'], ['count'], ['target_share'], ['fizzle_seconds'], ['max_wallclock_seconds'], ['status']],
  image: [['uuid'], ['name'], ['version'], ['format'], ['size'], ['virtual_size'], ['sha256'], ['source'], ['source', 'path'], ['created_at'], ['state']],
};

function hostileStrings(c: Canaries, base: FuzzBase): string[] {
  const inj = c.injected;
  return [
    '../../../../etc/shadow', '/etc/shadow', '/etc/passwd', '/proc/self/environ', '/dev/sda', '/tmp/../etc/passwd', '/./etc/./passwd',
    ...c.named,
    ...base.trickyDisks,
    ...inj.flatMap((p) => [
      `${base.disk},file=${p}`, `${base.disk},,file=${p}`, `,file=${p}`, `${base.kernel},initrd=${p}`, `${p}\n`, `${base.disk}\nfile=${p}`,
      `${p.replace(/^\//, '/../')}`, `file=${p}`, `guest=x,file=${p}`, `user,id=x,script=${p}`, `user,hostfwd=tcp::2222-:22,smb=${p}`,
    ]),
    ',', ',,', '=', 'a,b=c', 'x\ny', 'x\ry', '\t', '\u0000', '\u202edcba', 'ÿ', '😀', ' ', '', '-', '--help', '-kernel', '-readconfig', '-sandbox',
    '$(touch /tmp/drover-fuzz-pwned)', '`id`', '; rm -rf /', '| cat /etc/passwd', '"', "'", '\\', '%s%s%n', '{{7*7}}', '${HOME}',
    'A'.repeat(5000), 'user', 'unix', 'tcp', 'none', 'always', 'qcow2', 'raw', 'RUNNING', 'REQUESTED_DELETE', 'ERROR', 'hv1', 'hv2',
    '52:54:00:12:34:56', '00000000-0000-0000-0000-000000000000', 'pool/image,conf=/etc/passwd', 'br0;id', 'br0\nx',
  ];
}

/** Anything a field might be set to: wrong types, hostile strings, huge and odd numbers, structures. */
export function hostileValue(c: Canaries, base: FuzzBase): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...hostileStrings(c, base)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
    { weight: 2, arbitrary: fc.constantFrom(0, -1, 1, 15, 16, 17, 1.5, 2 ** 31, 2 ** 32 + 1, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, Number.MIN_VALUE, 4 * 1024 * 1024 + 1) },
    { weight: 1, arbitrary: fc.integer() },
    { weight: 1, arbitrary: fc.constantFrom(true, false, null) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    { weight: 1, arbitrary: fc.array(fc.constantFrom(...hostileStrings(c, base)), { maxLength: 3 }) },
  );
}

type Mutation = { op: 'set'; path: readonly (string | number)[]; value: unknown } | { op: 'delete'; path: readonly (string | number)[] } | { op: 'unknown'; at: readonly (string | number)[]; key: string; value: unknown };

function mutationArb(kind: RecordKind, c: Canaries, base: FuzzBase): fc.Arbitrary<Mutation> {
  const path = fc.constantFrom(...FIELD_PATHS[kind]);
  const at = fc.constantFrom<readonly (string | number)[]>([], ['spec'], ['spec', 'boot'], ['spec', 'disks', 0], ['template']);
  return fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), path, value: hostileValue(c, base) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), path }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('unknown' as const), at, key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'file', 'script', 'readconfig', '')), value: hostileValue(c, base) }) },
  );
}

/** How a record's text is broken after the mutations, if at all. */
const TEXT_BREAKS = ['none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'none', 'truncate', 'huge-number', 'duplicate-key', 'garbage', 'not-an-object'] as const;

function setIn(obj: unknown, path: readonly (string | number)[], value: unknown, remove: boolean): void {
  let cur = obj as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) {
    const next = cur[p];
    if (typeof next !== 'object' || next === null) return;
    cur = next as Record<string | number, unknown>;
  }
  const last = path[path.length - 1]!;
  // defineProperty: "__proto__" becomes an own key, as JSON.parse would make it.
  if (remove) delete cur[last];
  else Object.defineProperty(cur, last, { value, enumerable: true, writable: true, configurable: true });
}

function validBase(kind: RecordKind, id: string, n: number, base: FuzzBase, host: string): Record<string, unknown> {
  const spec = { vcpus: 1, memory: 96, boot: { kernel: base.kernel, initrd: base.initrd, cmdline: 'console=ttyS0 quiet' }, vnc: 'none', restart: 'never' };
  switch (kind) {
    case 'vm':
      return { uuid: id, name: `fz-${n}`, host, status: 'REQUESTED_NEW', spec: n % 2 === 0 ? spec : { ...spec, disks: [{ path: base.diskOf(n), format: 'raw' }] } };
    case 'host':
      return { name: id, hostid: '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59', ip: '127.0.0.1', status: 'ALIVE', cpus: 2, memory: 4096, reserved_memory: 0, free_memory: 4096, version: '0', heartbeat_at: new Date().toISOString() };
    case 'pool':
      // count 0 on a host that does not exist: a valid pool never makes VMs (fuzzPool keeps it so).
      return { name: id, template: { spec }, count: 0, hosts: ['hv-none'] };
    case 'image':
      return { uuid: id, name: `fzi-${n}`, version: '1', format: 'raw', size: 512, virtual_size: 512, sha256: '0'.repeat(64), source: { type: 'file', path: base.disk }, created_at: new Date().toISOString(), state: 'active' };
  }
}

function breakText(text: string, how: (typeof TEXT_BREAKS)[number], cut: number): string {
  switch (how) {
    case 'truncate':
      return text.slice(0, Math.floor(cut * text.length));
    case 'huge-number':
      return text.replace(/"memory":\d+/, '"memory":1e400').replace(/"cpus":\d+/, '"cpus":123456789012345678901234567890');
    case 'duplicate-key':
      return text.replace(/^\{/, '{"name":"../../etc","host":"\\u0000",');
    case 'garbage':
      return text.slice(0, 10) + '\u0000\uffff}{]["' + text.slice(10);
    case 'not-an-object':
      return ['null', '[]', '"a string"', '42', 'true', ''][Math.floor(cut * 6)]!;
    default:
      return text;
  }
}

/** `count` records: about 70 % VMs, 10 % each hosts, pools and images; `seed` makes them again. */
export function generateRecords(count: number, seed: number, c: Canaries, base: FuzzBase): FuzzRecord[] {
  const arb = fc.constantFrom<RecordKind>('vm', 'vm', 'vm', 'vm', 'vm', 'vm', 'vm', 'host', 'pool', 'image').chain((kind) => fc.record({
    kind: fc.constant(kind),
    host: fc.constantFrom(...base.hosts, ''),
    // A third untouched (valid: they run, and their qemu argv is checked), the rest mutated 1-3 times.
    mutations: fc.oneof(fc.constant([]), fc.array(mutationArb(kind, c, base), { minLength: 1, maxLength: 3 }), fc.array(mutationArb(kind, c, base), { minLength: 1, maxLength: 3 })),
    textBreak: fc.constantFrom(...TEXT_BREAKS),
    cut: fc.double({ min: 0, max: 0.999, noNaN: true }),
    // One VM record in 20 under a key whose last segment is not a uuid.
    hostileKey: fc.oneof(
      { weight: 19, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.constantFrom('../x', 'a/b/', 'NOT-A-UUID-', '2B0C4F7E-3A51-4B8E-9A0E-6F1D2C3B', ' ', '\n', '../', '%2e%2e', '2b0c4f7e-3a51-4b8e-9a0e-') },
    ),
  }));
  return fc.sample(arb, { numRuns: count, seed }).map((g, n) => {
    const uuid = `${(seed >>> 0).toString(16).padStart(8, '0').slice(0, 8)}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
    const name = `fz${g.kind[0]}-${n}`;
    // Hostile keys carry the record's number, so no two records of a run share a key.
    const id = g.kind === 'vm' && g.hostileKey !== null ? `${g.hostileKey}${n}` : g.kind === 'vm' || g.kind === 'image' ? uuid : name;
    const record = validBase(g.kind, g.kind === 'vm' || g.kind === 'image' ? uuid : name, n, base, g.host);
    const mutations: string[] = g.hostileKey !== null && g.kind === 'vm' ? [`key ${JSON.stringify(g.hostileKey)}`] : [];
    for (const m of g.mutations) {
      if (m.op === 'set') setIn(record, m.path, m.value, false);
      else if (m.op === 'delete') setIn(record, m.path, undefined, true);
      else setIn(record, [...m.at, m.key], m.value, false);
      mutations.push(m.op === 'unknown' ? `unknown ${[...m.at, m.key].join('.')}` : `${m.op} ${m.path.join('.')}`);
    }
    if (g.kind === 'pool' && parsePoolRecord(JSON.stringify(record), name).ok) neuterPool(record);
    if (g.textBreak !== 'none') mutations.push(`text: ${g.textBreak}`);
    return { kind: g.kind, id, raw: breakText(JSON.stringify(record), g.textBreak, g.cut), mutations, ...(g.kind === 'vm' && n % 2 === 1 ? { disk: base.diskOf(n) } : {}) };
  });
}

/** A pool that is still valid after its mutations must not make VMs: count 0, on no real host. */
function neuterPool(record: Record<string, unknown>): void {
  delete record.target_share;
  record.count = 0;
  record.hosts = ['hv-none'];
}
