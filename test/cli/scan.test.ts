import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CliContext } from '../../src/cli/context.js';
import { runCli } from '../../src/cli/program.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import type { ScanRow } from '../../src/cli/scan/scan-rows.js';
import { cluster, lines, spawnDrover, stdoutJson, uuidWith, vmRecord, type Cluster, stdoutText } from './helpers.js';
import { hostStats, MiB, putStats, vmStats } from './fleet-fixture.js';

const WEB1 = uuidWith('a1a10000');
const WEB2 = uuidWith('b2b20000');
const DB1 = uuidWith('c3c30000');
const OLD1 = uuidWith('d4d40000');
const NEW1 = uuidWith('e5e50000');
const CLEAR = '\u001b[H\u001b[2J';

/** Five VMs: two measured on hv1, one on hv2 whose summary is stale, one stopped, one not placed. */
async function fleet(c: Cluster): Promise<void> {
  await c.putVm(vmRecord(WEB1, 'web-1', { spec: { vcpus: 2, memory: 512 } }));
  await c.putVm(vmRecord(WEB2, 'web-2'));
  await c.putVm(vmRecord(DB1, 'db-1', { host: 'hv2' }));
  await c.putVm(vmRecord(OLD1, 'old-1', { status: 'STOP' }));
  await c.putVm(vmRecord(NEW1, 'new-1', { status: 'REQUESTED_NEW', host: '' }));
  await putStats(
    c,
    hostStats('hv1', [
      vmStats(WEB1, 'web-1', { vcpus: 2, memory: 512, cpu_load: 1.97 }),
      // Taken just before old-1 stopped: its figures must not show once the record says STOP.
      vmStats(OLD1, 'old-1', { cpu_load: 0.7 }),
      vmStats(WEB2, 'web-2', { cpu_load: 0.02, wall_seconds: 42, uptime_seconds: 42, disk_read_bps: 0, disk_write_bps: 0, net_rx_bps: 2048, net_tx_bps: 3 * MiB, net_rx_bytes: 4096, net_tx_bytes: 6 * MiB }),
    ]),
  );
  // hv2's collector stopped two minutes ago: 12 intervals.
  await putStats(c, hostStats('hv2', [vmStats(DB1, 'db-1', { cpu_load: 0.5, uptime_seconds: 600 })], { at: new Date(Date.now() - 120_000).toISOString(), interval: 10 }));
}


/** Table rows as cells (columns are two or more spaces apart; a cell like "1.2 MiB/s" has one). */
function cells(text: string): string[][] {
  return lines(text).map((l) => l.trim().split(/\s{2,}/));
}

describe('drover scan (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('shows every VM with its host\'s figures in human units, "-" where nothing is measured, and marks a stale summary', async () => {
    const c = cluster(etcd);
    await fleet(c);
    const res = await c.drover(['scan']);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(cells(res.stdout).slice(0, -1), [
      ['NAME', 'HOST', 'STATUS', 'VCPUS', 'MEMORY', 'CPU', 'WALL', 'UPTIME', 'DISK_READ', 'DISK_WRITE', 'NET_RX', 'NET_TX'],
      ['db-1', 'hv2', 'RUNNING', '1', '256.0 MiB', '0.50*', '3h12m*', '10m00s*', '1.2 MiB/s*', '512.0 KiB/s*', '-', '-'],
      ['new-1', '-', 'REQUESTED_NEW', '1', '256.0 MiB', '-', '-', '-', '-', '-', '-', '-'],
      ['old-1', 'hv1', 'STOP', '1', '256.0 MiB', '-', '-', '-', '-', '-', '-', '-'],
      ['web-1', 'hv1', 'RUNNING', '2', '512.0 MiB', '1.97', '3h12m', '3h12m', '1.2 MiB/s', '512.0 KiB/s', '-', '-'],
      ['web-2', 'hv1', 'RUNNING', '1', '256.0 MiB', '0.02', '42s', '42s', '0 B/s', '0 B/s', '2.0 KiB/s', '3.0 MiB/s'],
    ]);
    assert.match(lines(res.stdout).at(-1)!, /^\* stale: the stats summary of host hv2 is \dm\d\ds old\.$/);
    // Figures are right-aligned under their headers.
    const [header, , , , web1] = lines(res.stdout);
    assert.equal(header!.search(/\bCPU\b/) + 'CPU'.length, web1!.indexOf('1.97') + '1.97'.length);
  });

  it('sorts (nulls last in both directions), filters with field=value and globs, picks columns, drops the header', async () => {
    const c = cluster(etcd);
    await fleet(c);
    const byCpu = await c.drover(['scan', '--sort', 'cpu', '-o', 'name,cpu', '-H']);
    assert.deepEqual(cells(stdoutText(byCpu)), [['web-2', '0.02'], ['db-1', '0.50*'], ['web-1', '1.97'], ['new-1', '-'], ['old-1', '-']]);
    const reversed = await c.drover(['scan', '--sort', 'cpu_load', '-r', '-o', 'name', '-H']);
    assert.deepEqual(lines(stdoutText(reversed)), ['web-1', 'db-1', 'web-2', 'new-1', 'old-1']);
    const filtered = await c.drover(['scan', 'host=hv1', 'name=web-*', '-o', 'name,status,net_tx', '-H']);
    assert.deepEqual(cells(stdoutText(filtered)), [['web-1', 'RUNNING', '-'], ['web-2', 'RUNNING', '3.0 MiB/s']]);
    const stopped = await c.drover(['scan', 'status=STOP', '-o', 'uuid', '-H']);
    assert.deepEqual(lines(stdoutText(stopped)), [OLD1]);
    const unknown = await c.drover(['scan', '--sort', 'bogus']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^drover: Sort column "bogus" is not a scan column; use one of cpu, .*\.\n$/);
    const badFilter = await c.drover(['scan', 'colour=red']);
    assert.equal(badFilter.code, 2);
    assert.match(badFilter.stderr, /^drover: Filter field "colour" is not a scan column/);
  });

  it('--json prints raw numbers under stable field names, null where not measured; -o picks fields', async () => {
    const c = cluster(etcd);
    await fleet(c);
    const rows = stdoutJson<ScanRow[]>(await c.drover(['scan', '--json']));
    assert.deepEqual(rows.map((r) => r.name), ['db-1', 'new-1', 'old-1', 'web-1', 'web-2']);
    const web2 = rows.find((r) => r.name === 'web-2')!;
    assert.deepEqual(Object.keys(web2), [
      'uuid', 'name', 'host', 'status', 'vcpus', 'memory', 'pid', 'cpu_load', 'cpu_seconds', 'wall_seconds', 'uptime_seconds', 'rss_bytes',
      'disk_read_bps', 'disk_write_bps', 'disk_read_bytes', 'disk_write_bytes', 'net_rx_bps', 'net_tx_bps', 'net_rx_bytes', 'net_tx_bytes',
      'stats_at', 'stats_age_seconds', 'stale',
    ]);
    assert.equal(web2.uuid, WEB2);
    assert.equal(web2.cpu_load, 0.02);
    assert.equal(web2.net_tx_bps, 3 * MiB);
    assert.equal(web2.rss_bytes, 180 * MiB);
    assert.equal(web2.memory, 256);
    assert.equal(web2.stale, false);
    assert.ok(web2.stats_age_seconds !== null && web2.stats_age_seconds < 30, String(web2.stats_age_seconds));
    const old1 = rows.find((r) => r.name === 'old-1')!;
    assert.equal(old1.cpu_load, null);
    assert.equal(old1.stats_at, null);
    const db1 = rows.find((r) => r.name === 'db-1')!;
    assert.equal(db1.stale, true);
    assert.ok(db1.stats_age_seconds !== null && db1.stats_age_seconds >= 120);
    const picked = stdoutJson<object[]>(await c.drover(['scan', '--json', '-o', 'name,cpu,wall', 'name=web-1']));
    assert.deepEqual(picked, [{ name: 'web-1', cpu_load: 1.97, wall_seconds: 3 * 3600 + 12 * 60 + 5 }]);
  });

  it('a summary that does not match the schema leaves that host\'s VMs unmeasured, not the scan failed', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(WEB1, 'web-1'));
    await c.kv.put(c.keys.stats('hv1'), JSON.stringify({ host: 'hv1', at: 'yesterday' }));
    const res = await c.drover(['scan', '-o', 'name,cpu']);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(cells(res.stdout), [['NAME', 'CPU'], ['web-1', '-'], ['! The stats summary of host hv1 is invalid at interval: Invalid input: expected number, received undefined.']]);
  });

  it('--watch redraws until Ctrl-C, which exits 0; a change in etcd shows in the next table', async (t) => {
    const c = cluster(etcd);
    await fleet(c);
    const watch = spawnDrover(['scan', '--watch', '0.5', '-o', 'name,cpu', 'name=web-1', '--etcd', etcd.endpoint, '--prefix', c.prefix]);
    t.after(() => watch.kill());
    await watch.waitFor(/web-1\s+1\.97/);
    assert.match(watch.stdout(), /^Every 0.5s: drover scan {4}\d{4}-\d\d-\d\dT[\d:.]+Z\n\nNAME\s+CPU\nweb-1\s+1\.97\n/);
    assert.ok(!watch.stdout().includes('\u001b['), 'no ANSI codes when stdout is not a terminal');
    await putStats(c, hostStats('hv1', [vmStats(WEB1, 'web-1', { cpu_load: 0.25 })]));
    await watch.waitFor(/web-1\s+0\.25/);
    assert.equal(await watch.interrupt(), 0, watch.stderr());
    assert.equal(watch.stderr(), '');
  });

  it('--watch --json writes one JSON array per line', async (t) => {
    const c = cluster(etcd);
    await fleet(c);
    const watch = spawnDrover(['scan', '--watch=0.3', '--json', '-o', 'name', 'name=db-1', '--etcd', etcd.endpoint, '--prefix', c.prefix]);
    t.after(() => watch.kill());
    await watch.waitFor(/(\[.*\]\n){2}/);
    assert.equal(await watch.interrupt(), 0);
    for (const line of lines(watch.stdout())) assert.deepEqual(JSON.parse(line), [{ name: 'db-1' }]);
  });
});

describe('drover scan --watch on a terminal (in-process, real etcd)', () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('clears the screen and homes the cursor before each table, and Ctrl-C ends with 0', async () => {
    const c = cluster(etcd);
    await fleet(c);
    let out = '';
    const stdout = Object.assign(new Writable({ write: (chunk: Buffer, _enc, done) => ((out += chunk.toString()), done()) }), { isTTY: true });
    const stderr = new Writable({ write: (_chunk, _enc, done) => done() });
    const ctx: CliContext = { env: etcd.env, io: { stdout, stderr, stdin: () => process.stdin } };
    const run = runCli(['scan', '--watch', '0.2', '-o', 'name', 'name=web-1', '--etcd', etcd.endpoint, '--prefix', c.prefix], ctx);
    while (out.split(CLEAR).length < 3) await sleep(50);
    process.kill(process.pid, 'SIGINT'); // the command's own handler takes it, as it would a user's Ctrl-C
    assert.equal(await run, 0);
    const frames = out.split(CLEAR);
    assert.equal(frames[0], '');
    for (const f of frames.slice(1)) assert.match(f, /^Every 0.2s: drover scan {4}\S+\n\nNAME\nweb-1\n$/);
  });
});
