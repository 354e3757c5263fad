// APEL accounting end to end on real files: Accounting.vmFinished decides
// (fizzle_seconds) and writes records into <state>/apel-archive and
// apel-outgoing; every record is read back with the independent APEL reader
// (apel-message.ts), and the outgoing queue with python-dirq, the library
// APEL's ssmsend reads it with (when installed: Debian's python3-dirq).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Accounting, finishedVmUsage, type FinishedVmUsage } from '../../src/observability/accounting/accounting.js';
import { vmRecordSchema } from '../../src/contract/vm-record.js';
import { accountingSettingsSchema, type AccountingSettings } from '../../src/observability/accounting/accounting-settings.js';
import { spoolApelMessage } from '../../src/observability/accounting/apel-spool.js';
import { checkCloudRecord, parseApelMessage } from './apel-message.js';

const run = promisify(execFile);

interface LogLine { level: number; msg: string; [k: string]: unknown }

function harness(root: string, name: string, settings: Partial<AccountingSettings> = {}) {
  const stateDir = join(root, name);
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  let config = accountingSettingsSchema.parse(settings);
  const accounting = new Accounting({ stateDir, host: 'hv1', config: () => config, logger, cloudType: 'drover/0.1.0' });
  return {
    stateDir,
    lines,
    accounting,
    setConfig: (s: Partial<AccountingSettings>) => { config = accountingSettingsSchema.parse(s); },
  };
}

const START = new Date('2026-11-23T07:00:00.250Z');
const at = (base: Date, seconds: number): Date => new Date(base.getTime() + seconds * 1000);

function usage(over: Partial<FinishedVmUsage> = {}): FinishedVmUsage {
  return {
    uuid: '0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11',
    name: 'worker-01',
    owner: 'alice',
    pool: 'workers',
    startedAt: START,
    endedAt: at(START, 3 * 3600 + 25.5),
    cpuSeconds: 10_234.6,
    vcpus: 2,
    memoryMiB: 2048,
    diskGiB: 19.5,
    image: 'debian:12',
    ...over,
  };
}

/** Every file under dir, relative paths, sorted; dot-files included. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const day of await readdir(dir).catch(() => [] as string[])) {
    for (const f of await readdir(join(dir, day))) out.push(`${day}/${f}`);
  }
  return out.sort();
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

describe('APEL accounting on real files', () => {
  let root: string;
  before(async () => { root = await mkdtemp(join(tmpdir(), 'drover-apel-')); });
  after(async () => { await rm(root, { recursive: true, force: true }); });

  it('a finished VM gets one record in archive and outgoing whose fields are what the agent measured', async () => {
    const h = harness(root, 'full', { gocdb_sitename: 'UKI-TEST-SITE', apel_cloud_compute_service: 'drover.example.org' });
    assert.equal(await h.accounting.vmFinished(usage()), 'written');

    const archived = await listFiles(join(h.stateDir, 'apel-archive'));
    const outgoing = await listFiles(join(h.stateDir, 'apel-outgoing'));
    assert.equal(archived.length, 1);
    assert.equal(outgoing.length, 1);
    // dirq's names: an 8-digit directory (the UTC date of the end) and a 14-digit element (HHMMSS first).
    assert.match(archived[0]!, /^20261123\/100025\d{8}$/);
    assert.match(outgoing[0]!, /^20261123\/100025\d{8}$/);

    const text = await readFile(join(h.stateDir, 'apel-archive', archived[0]!), 'utf8');
    assert.equal(await readFile(join(h.stateDir, 'apel-outgoing', outgoing[0]!), 'utf8'), text);
    const msg = parseApelMessage(text);
    assert.deepEqual([msg.type, msg.version, msg.records.length], ['APEL-cloud-message', 'v0.4', 1]);
    const rec = msg.records[0]!;
    checkCloudRecord(rec);

    const startEpoch = Math.floor(START.getTime() / 1000);
    const endEpoch = Math.floor(usage().endedAt.getTime() / 1000);
    assert.equal(startEpoch, 1795417200);
    assert.equal(endEpoch, 1795417200 + 3 * 3600 + 25);
    const expected: Record<string, string> = {
      VMUUID: `0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11-${START.getTime()}`,
      SiteName: 'UKI-TEST-SITE',
      CloudComputeService: 'drover.example.org',
      MachineName: 'worker-01',
      LocalUserId: 'alice',
      LocalGroupId: 'workers',
      Status: 'completed',
      StartTime: String(startEpoch),
      EndTime: String(endEpoch),
      WallDuration: String(endEpoch - startEpoch),
      CpuDuration: '10235',
      CpuCount: '2',
      Memory: '2048',
      Disk: '20',
      ImageId: 'debian:12',
      CloudType: 'drover/0.1.0',
    };
    assert.deepEqual(Object.fromEntries(rec), expected);
    assert.equal(Number(rec.get('WallDuration')), Number(rec.get('EndTime')) - Number(rec.get('StartTime')));
    assert.ok(text.endsWith('\n%%\n'));

    // Separate files (ssmsend removing its copy leaves the archive), private modes, nothing half-written left.
    const a = await stat(join(h.stateDir, 'apel-archive', archived[0]!));
    const o = await stat(join(h.stateDir, 'apel-outgoing', outgoing[0]!));
    assert.notEqual(a.ino, o.ino);
    assert.equal(a.nlink, 1);
    assert.equal(a.mode & 0o777, 0o640);
    assert.equal((await stat(join(h.stateDir, 'apel-archive', '20261123'))).mode & 0o777, 0o750);
    assert.equal((await stat(join(h.stateDir, 'apel-outgoing'))).mode & 0o777, 0o750);
    const info = h.lines.find((l) => l.level === 30);
    assert.match(info?.msg ?? '', /^Accounting record of VM worker-01 written \(10825 s wall, 10235 s CPU\)\.$/);
  });

  it('without gocdb_sitename: the archive only, under a placeholder site name; the host is the compute service', async () => {
    const h = harness(root, 'nosite');
    assert.equal(await h.accounting.vmFinished(usage({ pool: undefined, image: undefined, diskGiB: undefined, owner: undefined })), 'written');
    assert.equal(await exists(join(h.stateDir, 'apel-outgoing')), false);
    const [file] = await listFiles(join(h.stateDir, 'apel-archive'));
    const rec = parseApelMessage(await readFile(join(h.stateDir, 'apel-archive', file!), 'utf8')).records[0]!;
    checkCloudRecord(rec);
    assert.equal(rec.get('SiteName'), 'drover:hv1');
    assert.equal(rec.get('CloudComputeService'), 'hv1');
    for (const k of ['LocalGroupId', 'ImageId', 'Disk', 'LocalUserId']) assert.equal(rec.has(k), false, k);
  });

  it('fizzle_seconds: none under it, one at exactly it; the run is measured to the millisecond', async () => {
    const h = harness(root, 'fizzle', { gocdb_sitename: 'UKI-TEST-SITE' });
    assert.equal(await h.accounting.vmFinished(usage({ endedAt: at(START, 600 - 0.001) })), 'fizzled');
    assert.equal(await h.accounting.vmFinished(usage({ endedAt: START })), 'fizzled');
    assert.equal(await exists(join(h.stateDir, 'apel-archive')), false);
    assert.equal(await exists(join(h.stateDir, 'apel-outgoing')), false);
    const debug = h.lines.filter((l) => l.level === 20).map((l) => l.msg);
    assert.deepEqual(debug, [
      'No accounting record for VM worker-01: it ran 600.0 s, under fizzle_seconds (600 s).',
      'No accounting record for VM worker-01: it ran 0.0 s, under fizzle_seconds (600 s).',
    ]);

    assert.equal(await h.accounting.vmFinished(usage({ endedAt: at(START, 600) })), 'written');
    const files = await listFiles(join(h.stateDir, 'apel-archive'));
    assert.equal(files.length, 1);
    const rec = parseApelMessage(await readFile(join(h.stateDir, 'apel-archive', files[0]!), 'utf8')).records[0]!;
    assert.equal(rec.get('WallDuration'), '600');
    assert.equal((await listFiles(join(h.stateDir, 'apel-outgoing'))).length, 1);
  });

  it("a pool's own fizzle_seconds wins over the agent's; a config change applies to the next VM", async () => {
    const h = harness(root, 'poolfizzle', { fizzle_seconds: 600 });
    assert.equal(await h.accounting.vmFinished(usage({ poolFizzleSeconds: 60, endedAt: at(START, 120) })), 'written');
    assert.equal(await h.accounting.vmFinished(usage({ poolFizzleSeconds: 60, endedAt: at(START, 59) })), 'fizzled');
    assert.equal(await h.accounting.vmFinished(usage({ poolFizzleSeconds: 0, endedAt: at(START, 0.5) })), 'written');
    assert.equal(await h.accounting.vmFinished(usage({ pool: undefined, endedAt: at(START, 120) })), 'fizzled');
    h.setConfig({ fizzle_seconds: 100 });
    assert.equal(await h.accounting.vmFinished(usage({ pool: undefined, endedAt: at(START, 120) })), 'written');
    assert.equal((await listFiles(join(h.stateDir, 'apel-archive'))).length, 3);
  });

  it('one record per finished VM and per run: each its own file and VMUUID', async () => {
    const h = harness(root, 'many', { gocdb_sitename: 'UKI-TEST-SITE' });
    const uuids = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', '33333333-3333-4333-8333-333333333333'];
    const ends = at(START, 3600);
    const results = await Promise.all(uuids.map((uuid, i) => h.accounting.vmFinished(usage({ uuid, name: `vm-${i}`, endedAt: ends }))));
    assert.deepEqual(results, ['written', 'written', 'written']);
    // The first VM again: a second run, started after the first ended.
    assert.equal(await h.accounting.vmFinished(usage({ uuid: uuids[0], startedAt: at(ends, 5), endedAt: at(ends, 4000) })), 'written');

    for (const dir of ['apel-archive', 'apel-outgoing']) {
      const files = await listFiles(join(h.stateDir, dir));
      assert.equal(files.length, 4, dir);
      const ids = await Promise.all(files.map(async (f) => parseApelMessage(await readFile(join(h.stateDir, dir, f), 'utf8')).records[0]!.get('VMUUID')));
      assert.deepEqual(ids.sort(), [
        `${uuids[0]}-${START.getTime()}`,
        `${uuids[0]}-${at(ends, 5).getTime()}`,
        `${uuids[1]}-${START.getTime()}`,
        `${uuids[2]}-${START.getTime()}`,
      ]);
    }
  });

  it('never overwrites a record: a name that is taken is skipped', async () => {
    const stateDir = join(root, 'clash');
    const when = new Date('2026-11-23T23:59:59.999Z');
    const sequence = [7, 7, 8];
    const random = () => sequence.shift() ?? 9;
    const first = await spoolApelMessage({ stateDir, text: 'first\n', at: when, outgoing: false, random });
    const second = await spoolApelMessage({ stateDir, text: 'second\n', at: when, outgoing: false, random });
    assert.equal(first.archive, join(stateDir, 'apel-archive', '20261123', '23595999900007'));
    assert.equal(second.archive, join(stateDir, 'apel-archive', '20261123', '23595999900008'));
    assert.equal(await readFile(first.archive, 'utf8'), 'first\n');
    assert.equal(await readFile(second.archive, 'utf8'), 'second\n');
    assert.deepEqual(await listFiles(join(stateDir, 'apel-archive')), ['20261123/23595999900007', '20261123/23595999900008']);
  });

  it('hostile names and owners: still exactly one well-formed record, and a warning says what was changed', async () => {
    const h = harness(root, 'hostile', { gocdb_sitename: 'UKI-TEST-SITE' });
    const name = 'x\n%%\nAPEL-cloud-message: v0.4\nVMUUID: forged\nSiteName: OTHER\u2028Status: started';
    assert.equal(await h.accounting.vmFinished(usage({ name, owner: 'mallory%%\r\nFQAN: /atlas', fqan: '/dteam/Role=NULL' })), 'written');
    for (const dir of ['apel-archive', 'apel-outgoing']) {
      const files = await listFiles(join(h.stateDir, dir));
      assert.equal(files.length, 1);
      const msg = parseApelMessage(await readFile(join(h.stateDir, dir, files[0]!), 'utf8'));
      assert.equal(msg.records.length, 1);
      const rec = msg.records[0]!;
      checkCloudRecord(rec);
      assert.equal(rec.get('VMUUID'), `0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11-${START.getTime()}`);
      assert.equal(rec.get('SiteName'), 'UKI-TEST-SITE');
      assert.equal(rec.get('Status'), 'completed');
      assert.equal(rec.get('MachineName'), 'x % APEL-cloud-message: v0.4 VMUUID: forged SiteName: OTHER Status: started');
      assert.equal(rec.get('LocalUserId'), 'mallory% FQAN: /atlas');
      assert.equal(rec.get('FQAN'), '/dteam/Role=NULL');
    }
    const warned = h.lines.filter((l) => l.level === 40);
    assert.deepEqual(warned.map((l) => l.field), ['MachineName', 'LocalUserId']);
    assert.equal(
      warned[0]!.msg,
      'The accounting record of VM 0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11 holds MachineName "x % APEL-cloud-message: v0.4 VMUUID: forged SiteName: OTHER Status: started"' +
        ' instead of "x\\n%%\\nAPEL-cloud-message: v0.4\\nVMUUID: forged\\nSiteName: OTHER\\u2028Status: started": APEL records carry printable ASCII without line breaks or "%%".',
    );
  });

  it('bad usage and filesystem errors are one logged sentence and "failed", never a throw', async () => {
    const h = harness(root, 'bad', { gocdb_sitename: 'UKI-TEST-SITE' });
    assert.equal(await h.accounting.vmFinished(usage({ endedAt: at(START, -1) })), 'failed');
    assert.equal(await h.accounting.vmFinished(usage({ cpuSeconds: Number.NaN })), 'failed');
    assert.equal(await h.accounting.vmFinished(usage({ uuid: '../../etc' })), 'failed');
    assert.equal(await exists(h.stateDir), false);
    const errors = h.lines.filter((l) => l.level === 50).map((l) => l.msg);
    assert.deepEqual(errors, [
      'No accounting record for VM 0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11: its usage is invalid (usage: endedAt is before startedAt).',
      'No accounting record for VM 0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11: its usage is invalid (cpuSeconds: Invalid input: expected number, received NaN).',
      'No accounting record for VM ../../etc: its usage is invalid (uuid: uuid must be a lower-case UUID).',
    ]);

    // apel-archive is a file: the write fails, the agent is told, nothing is thrown.
    await mkdir(h.stateDir, { recursive: true });
    await writeFile(join(h.stateDir, 'apel-archive'), 'not a directory');
    assert.equal(await h.accounting.vmFinished(usage()), 'failed');
    const last = h.lines.at(-1)!;
    assert.equal(last.level, 50);
    assert.match(last.msg, /^Could not write the accounting record of VM worker-01: ENOTDIR: not a directory, mkdir '[^']+'\.$/);
    assert.equal(await exists(join(h.stateDir, 'apel-outgoing')), false);
  });

  it("finishedVmUsage: the VM record's owner, pool, vCPUs, memory and first image disk, with the collector's times and CPU", async () => {
    const record = vmRecordSchema.parse({
      uuid: '44444444-4444-4444-8444-444444444444',
      name: 'web-1',
      owner: 'bob',
      pool: 'web',
      spec: { vcpus: 4, memory: 768, disks: [{ path: '/srv/data.img' }, { image: 'alpine:3.20', size: 2048 }, { image: 'other' }] },
    });
    const run = { startedAt: '2026-11-23T08:00:00.000Z', endedAt: '2026-11-23T09:30:00.900Z', cpuSeconds: 4321.4 };
    const u = finishedVmUsage(record, run, 120);
    assert.deepEqual(u, {
      uuid: record.uuid, name: 'web-1', owner: 'bob', pool: 'web', poolFizzleSeconds: 120,
      startedAt: new Date(run.startedAt), endedAt: new Date(run.endedAt), cpuSeconds: 4321.4,
      vcpus: 4, memoryMiB: 768, image: 'alpine:3.20',
    });
    assert.equal(finishedVmUsage({ ...record, pool: undefined }, run, 120).poolFizzleSeconds, undefined);

    const h = harness(root, 'fromrecord');
    assert.equal(await h.accounting.vmFinished(u), 'written');
    const [file] = await listFiles(join(h.stateDir, 'apel-archive'));
    const rec = parseApelMessage(await readFile(join(h.stateDir, 'apel-archive', file!), 'utf8')).records[0]!;
    assert.deepEqual(
      ['StartTime', 'EndTime', 'WallDuration', 'CpuDuration', 'CpuCount', 'Memory', 'ImageId', 'LocalUserId', 'LocalGroupId'].map((k) => rec.get(k)),
      [String(Date.parse(run.startedAt) / 1000), String(Math.floor(Date.parse(run.endedAt) / 1000)), '5400', '4321', '4', '768', 'alpine:3.20', 'bob', 'web'],
    );
    assert.equal(await h.accounting.vmFinished(finishedVmUsage(record, { ...run, endedAt: 'not a time' })), 'failed');
  });

  it("ssmsend's queue library (python-dirq QueueSimple) reads every outgoing record", async (t) => {
    const probe = await run('/usr/bin/python3', ['-c', 'import dirq.QueueSimple']).then(() => true, () => false);
    if (!probe) {
      t.skip('python3-dirq is not installed (apt-get install python3-dirq); the names were checked against its patterns above');
      return;
    }
    const h = harness(root, 'dirq', { gocdb_sitename: 'UKI-TEST-SITE' });
    for (let i = 0; i < 3; i++) {
      assert.equal(await h.accounting.vmFinished(usage({ name: `vm-${i}`, startedAt: at(START, i), endedAt: at(START, 3600 + i) })), 'written');
    }
    // What ssmsend does (ssm/sender.py): count, iterate, lock, get, remove.
    const script = [
      'import json, sys',
      'from dirq.QueueSimple import QueueSimple',
      'q = QueueSimple(sys.argv[1])',
      'out = {"count": q.count(), "texts": []}',
      'for name in q:',
      '    if not q.lock(name):',
      '        continue',
      '    out["texts"].append(q.get(name).decode("utf-8"))',
      '    q.remove(name)',
      'out["after"] = q.count()',
      'print(json.dumps(out))',
    ].join('\n');
    const { stdout } = await run('/usr/bin/python3', ['-c', script, join(h.stateDir, 'apel-outgoing')]);
    const result = JSON.parse(stdout) as { count: number; texts: string[]; after: number };
    assert.equal(result.count, 3);
    assert.equal(result.after, 0);
    const names = result.texts.map((text) => parseApelMessage(text).records[0]!.get('MachineName'));
    assert.deepEqual(names, ['vm-0', 'vm-1', 'vm-2'], 'in time order, as dirq sorts them');
    // The archive keeps its copies.
    assert.equal((await listFiles(join(h.stateDir, 'apel-archive'))).length, 3);
  });
});
