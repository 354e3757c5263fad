/**
 * Chaos scenario 4 (issue 16): property-based fuzzing of what drover reads
 * from etcd. CHAOS_FUZZ_RECORDS records (10,000 by default; lib/record-fuzz.ts,
 * fast-check) that start valid and are mutated into wrong types, hostile
 * strings, huge numbers, unknown keys, malformed JSON, traversals and
 * option injections, written in batches of CHAOS_FUZZ_BATCH into the VM,
 * host, pool and image keys that two real agents (schedulers on) read.
 *
 * What must hold:
 *  - the agents (and their schedulers) stay up: same processes at the end,
 *    and a VM written then without a host is placed and runs;
 *  - every invalid VM record an agent is to act on (designated to it, or
 *    with no usable host) ends in ERROR with one sentence in `error`;
 *  - a VM record designated to no live host is never started;
 *  - every qemu started has an argv that lib/argv-check.ts finds sound (no
 *    unexpected option or key, no key twice, no control character, paths
 *    absolute without "..");
 *  - canary files outside the allowed directories are never changed or
 *    deleted, and those that records name only inside injection strings
 *    are never opened (atime) nor named by any qemu argv.
 *
 * The agents get `allowed_paths` (CONTRACT.md 8): every qemu argv path
 * must lie under the allowed directories (or be a descriptor the agent
 * passed), and the canaries that records name whole must not be opened or
 * named by qemu either.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { killQemusUnder, startCluster, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { parseVmRecord } from '../../src/contract/vm-record.js';
import { ChaosReport, chaosRng, chaosSize, keepLogs, sleep } from './lib/chaos-env.js';
import { argvPaths, argvProblems } from './lib/argv-check.js';
import { QemuWatch } from './lib/qemu-watch.js';
import { generateRecords, type Canaries, type FuzzRecord } from './lib/record-fuzz.js';

const RECORDS = chaosSize('CHAOS_FUZZ_RECORDS', 10_000);
const BATCH = chaosSize('CHAOS_FUZZ_BATCH', 50);
const HOSTS = ['hv1', 'hv2'];
/** How long an agent may take to mark a batch's invalid records ERROR. */
const ERROR_WAIT_MS = 60_000;

interface Canary {
  path: string;
  sha256: string;
  mtimeMs: number;
  atimeMs: number;
}

async function canary(path: string, bytes: Buffer): Promise<Canary> {
  await writeFile(path, bytes);
  // atime before mtime: with relatime, the next read of the file moves atime.
  const day = 86_400;
  const now = Date.now() / 1000;
  await utimes(path, now - 2 * day, now - day);
  const s = await stat(path);
  return { path, sha256: createHash('sha256').update(bytes).digest('hex'), mtimeMs: s.mtimeMs, atimeMs: s.atimeMs };
}

async function canaryProblems(c: Canary, mustNotBeOpened: boolean): Promise<string[]> {
  const s = await stat(c.path).catch(() => null);
  if (!s) return [`canary ${c.path} was deleted`];
  const out: string[] = [];
  if (createHash('sha256').update(await readFile(c.path)).digest('hex') !== c.sha256 || s.mtimeMs !== c.mtimeMs) out.push(`canary ${c.path} was changed`);
  if (mustNotBeOpened && s.atimeMs !== c.atimeMs) out.push(`canary ${c.path} was read (atime moved)`);
  return out;
}

/** A record as JSON, or null while it is still the unreadable text the fuzz wrote. */
function parseLoosely(raw: string): { status?: unknown; error?: unknown } | null {
  try {
    const v: unknown = JSON.parse(raw);
    return typeof v === 'object' && v !== null ? (v as { status?: unknown; error?: unknown }) : null;
  } catch {
    return null;
  }
}

const keyOf = (cluster: Cluster, r: FuzzRecord): string =>
  r.kind === 'vm' ? cluster.keys.vm(r.id) : r.kind === 'host' ? cluster.keys.host(r.id) : r.kind === 'pool' ? cluster.keys.pool(r.id) : cluster.keys.image(r.id);

/** What an agent must do with a VM record: mark it ERROR, leave it alone (another host's), or (valid) whatever its status asks. */
function expectation(r: FuzzRecord): 'error' | 'nobody' | 'valid' {
  const parsed = parseVmRecord(r.raw, r.id);
  let host: unknown;
  try {
    host = (JSON.parse(r.raw) as { host?: unknown } | null)?.host;
  } catch {
    host = undefined;
  }
  if (parsed.ok) return HOSTS.includes(parsed.value.host ?? '') || !parsed.value.host ? 'valid' : 'nobody';
  return typeof host === 'string' && host !== '' && !HOSTS.includes(host) ? 'nobody' : 'error';
}

describe('chaos: fuzzed VM, host, pool and image records (real etcd, two real agents with schedulers, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let guest: GuestFiles;
  let watch: QemuWatch;
  let allowed: string;
  let canaries: { named: Canary[]; injected: Canary[] };
  const agents: AgentProcess[] = [];

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    allowed = join(cluster.dir, 'allowed');
    const outside = join(cluster.dir, 'outside');
    await mkdir(allowed);
    await mkdir(outside);
    await writeFile(join(allowed, 'disk.raw'), '');
    await truncate(join(allowed, 'disk.raw'), 1024 * 1024);
    const junk = Buffer.alloc(8192, 0x5a);
    canaries = {
      named: [await canary(join(outside, 'named-kernel'), junk), await canary(join(outside, 'named.raw'), junk)],
      injected: [await canary(join(outside, 'injected.raw'), junk), await canary(join(outside, 'injected-secret'), Buffer.from('secret\n'))],
    };
    watch = new QemuWatch([cluster.dir]).start();
    const allowedDirs = [allowed, guest.kernel.slice(0, guest.kernel.lastIndexOf('/'))];
    for (const name of HOSTS) {
      agents.push(await cluster.startAgent(name, { config: { scheduler: true, election_ttl: 2, allowed_paths: allowedDirs } }));
    }
  });
  let passed = false;
  after(async () => {
    if (!passed && cluster) await keepLogs(cluster.dir, 'record-fuzz');
    await watch?.stop();
    await cluster?.close();
    await etcd?.close();
  });

  it(`${RECORDS} fuzzed records: agents stay up, invalid VMs end in ERROR with a sentence, qemu argv sound, canaries untouched`, async (t) => {
    const rng = chaosRng();
    const report = new ChaosReport('record-fuzz', rng.seed, { CHAOS_FUZZ_RECORDS: RECORDS, CHAOS_FUZZ_BATCH: BATCH });
    // The open detector must work on this filesystem, or its check could not fail.
    const probe = await canary(join(cluster.dir, 'atime-probe'), Buffer.from('x'));
    await readFile(probe.path);
    assert.notEqual((await stat(probe.path)).atimeMs, probe.atimeMs, 'reading a file moves its atime here (relatime), so a read canary shows');

    // And the argv check must be able to fail: an injected key, a repeated key and a bare option are caught.
    assert.equal(argvProblems(['qemu', '-blockdev', 'driver=file,node-name=d,filename=/a.raw,,file=/x'], null).length, 0, 'an escaped comma is one value');
    assert.ok(argvProblems(['qemu', '-blockdev', 'driver=file,node-name=d,filename=/a.raw,file=/x'], null).some((p) => /unexpected key/.test(p)));
    assert.ok(argvProblems(['qemu', '-blockdev', 'driver=file,node-name=d,filename=/a.raw,filename=/x'], null).some((p) => /given twice/.test(p)));
    assert.ok(argvProblems(['qemu', '-name', 'guest=a,script=/x'], null).some((p) => /unexpected key/.test(p)));
    assert.ok(argvProblems(['qemu', '-readconfig', '/etc/passwd'], null).some((p) => /unexpected option/.test(p)));
    assert.ok(argvProblems(['qemu', '-kernel', '/a/../etc/passwd'], null).length > 0);

    const trickyDisks = ['evil,file=injected-secret.raw', 'evil,,double.raw', 'evil=x,format=qcow2.raw'].map((f) => join(allowed, f));
    for (const f of trickyDisks) {
      await writeFile(f, '');
      await truncate(f, 1024 * 1024);
    }

    const c: Canaries = { named: canaries.named.map((x) => x.path), injected: canaries.injected.map((x) => x.path) };
    const records = generateRecords(RECORDS, rng.seed, c, { hosts: HOSTS, kernel: guest.kernel, initrd: guest.initrd, disk: join(allowed, 'disk.raw'), diskOf: (n) => join(allowed, `disk-${n}.raw`), trickyDisks });
    const agentPids = agents.map((a) => a.child.pid);
    const problems: string[] = [];
    for (let at = 0; at < records.length; at += BATCH) {
      const batch = records.slice(at, at + BATCH);
      for (const r of batch) {
        if (r.disk) {
          await writeFile(r.disk, '');
          await truncate(r.disk, 1024 * 1024);
        }
        await cluster.kv.put(keyOf(cluster, r), r.raw);
        report.count(`written: ${r.kind}`);
      }
      const vms = batch.filter((r) => r.kind === 'vm').map((r) => ({ r, want: expectation(r) }));
      for (const v of vms) report.count(`vm records: ${v.want}`);
      // Every record an agent must mark ERROR gets there, with one sentence.
      const deadline = Date.now() + ERROR_WAIT_MS;
      let pending = vms.filter((v) => v.want === 'error');
      while (pending.length > 0 && Date.now() < deadline) {
        await sleep(250);
        const still: typeof pending = [];
        for (const v of pending) {
          const e = await cluster.kv.get(cluster.keys.vm(v.r.id));
          const rec = e ? parseLoosely(e.raw) : null;
          if (rec?.status === 'ERROR' && typeof rec.error === 'string' && rec.error.trim() !== '' && !/[\r\n]/.test(rec.error)) report.count('invalid vm records marked ERROR');
          else if (rec?.status === 'ERROR') problems.push(`VM record ${JSON.stringify(v.r.id)} is ERROR without one sentence: ${JSON.stringify(rec.error)}`);
          else still.push(v);
        }
        pending = still;
      }
      for (const v of pending) problems.push(`VM record ${JSON.stringify(v.r.id)} (${v.r.mutations.join('; ')}) is invalid but not ERROR after ${ERROR_WAIT_MS} ms: ${(await cluster.kv.get(cluster.keys.vm(v.r.id)))?.raw.slice(0, 300)}`);
      // Give the valid ones a moment to start, then clear the batch away.
      await sleep(vms.some((v) => v.want === 'valid') ? 2000 : 0);
      await watch.poll();
      for (const v of vms.filter((x) => x.want === 'nobody')) if (watch.forVm(v.r.id).length > 0) problems.push(`VM record ${v.r.id} designated to no live host was started`);
      for (const r of batch) await cluster.kv.delete(keyOf(cluster, r));
      for (const name of HOSTS) await killQemusUnder(join(cluster.dir, `state-${name}`));
      for (const r of batch) if (r.disk) await rm(r.disk, { force: true });
      if ((at / BATCH) % 20 === 19) t.diagnostic(`${at + batch.length} records, ${watch.all().length} qemus, ${problems.length} problems`);
    }
    await sleep(1000);
    await watch.poll();

    // Every qemu that ran: its argv is sound and names no canary it must not.
    for (const q of watch.all()) {
      for (const p of argvProblems(q.argv, [allowed, join(cluster.dir, 'state-hv1'), join(cluster.dir, 'state-hv2'), guest.kernel.slice(0, guest.kernel.lastIndexOf('/'))])) {
        problems.push(`qemu pid ${q.pid} (VM ${q.uuid}): ${p}`);
      }
      const forbidden = [...c.injected, ...c.named];
      for (const p of argvPaths(q.argv)) if (forbidden.includes(p)) problems.push(`qemu pid ${q.pid} (VM ${q.uuid}) was given the canary ${p}`);
    }
    for (const x of canaries.injected) problems.push(...(await canaryProblems(x, true)));
    for (const x of canaries.named) problems.push(...(await canaryProblems(x, true)));
    for (const f of ['/etc/passwd', '/etc/shadow']) if (!(await stat(f).catch(() => null))) problems.push(`${f} is gone`);

    // The agents and their schedulers are still the same processes, and still work.
    for (const [i, a] of agents.entries()) if (a.child.exitCode !== null || a.child.signalCode !== null || a.child.pid !== agentPids[i]) problems.push(`agent ${a.name} exited`);
    const last = await cluster.createVm({ name: 'after-the-fuzz' }, '');
    const placed = await cluster.waitForStatus(last, 'RUNNING', 120_000);
    assert.ok(HOSTS.includes(String(placed.host)), 'the scheduler placed it');

    report.count('qemu processes checked', watch.all().length);
    report.count('problems', problems.length);
    for (const p of problems.slice(0, 20)) report.note(p);
    await report.finish((l) => t.diagnostic(l));
    assert.deepEqual(problems.slice(0, 50), [], `${problems.length} problems`);
    passed = true;
  });
});
