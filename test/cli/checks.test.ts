import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/embedded/etcd-process.js';
import { touchHeartbeat } from '../../src/observability/heartbeat-file.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { GiB, hostRecord, hostStats, MiB, putHost, putStats, vmStats } from './fleet-fixture.js';
import { cluster, runDrover, uuidWith, vmRecord, type RunResult } from './helpers.js';

interface PerfItem {
  label: string;
  value: number;
  uom: string;
  warn: string;
  crit: string;
  min: string;
  max: string;
}

interface PluginOutput {
  code: number;
  service: string;
  state: string;
  text: string;
  perf: Map<string, PerfItem>;
}

const STATE_OF_CODE = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'];
const PERF_ITEM = /^'((?:[^']|'')+)'=(-?\d+(?:\.\d+)?)(s|%|B|c)?(?:;([^;]*)(?:;([^;]*)(?:;([^;]*)(?:;([^;]*))?)?)?)?$/;
const RANGE = /^(@?(-?\d+(\.\d+)?|~)?:?(-?\d+(\.\d+)?)?)?$/;

/**
 * Parses a run as the Monitoring Plugins guidelines define plugin output, and
 * fails unless it is exactly that: one line on stdout, nothing on stderr, an
 * exit code 0-3 that agrees with the state word, and well-formed perfdata.
 */
function plugin(res: RunResult): PluginOutput {
  assert.equal(res.stderr, '', 'a plugin writes nothing on stderr');
  const m = /^(\S+) (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]+?)(?: \| ([^\n]+))?\n$/.exec(res.stdout);
  assert.ok(m, `not plugin output: ${JSON.stringify(res.stdout)}`);
  const [, service, state, text, perfText] = m;
  assert.equal(STATE_OF_CODE[res.code], state, `exit code ${res.code} for ${state}`);
  const perf = new Map<string, PerfItem>();
  for (const item of perfText ? perfText.split(' ') : []) {
    const p = PERF_ITEM.exec(item);
    assert.ok(p, `bad perfdata item ${JSON.stringify(item)}`);
    const [, label, value, uom = '', warn = '', crit = '', min = '', max = ''] = p;
    assert.match(warn, RANGE);
    assert.match(crit, RANGE);
    perf.set(label!, { label: label!, value: Number(value), uom, warn, crit, min, max });
  }
  return { code: res.code, service: service!, state: state!, text: text!, perf };
}

describe('drover check-heartbeat (Nagios plugin, real files)', { concurrency: true }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-hb-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  async function stateDir(name: string, ageSeconds: number | null): Promise<string> {
    const d = join(dir, name);
    await mkdir(d);
    if (ageSeconds !== null) {
      await touchHeartbeat(d);
      const t = new Date(Date.now() - ageSeconds * 1000);
      await utimes(join(d, 'heartbeat'), t, t);
    }
    return d;
  }

  it('is OK while the heartbeat is younger than SECONDS, with the age as perfdata', async () => {
    const d = await stateDir('fresh', 0);
    const out = plugin(await runDrover(['check-heartbeat', '600', '--state-dir', d]));
    assert.equal(out.state, 'OK');
    assert.equal(out.service, 'HEARTBEAT');
    const age = out.perf.get('age')!;
    assert.ok(age.value >= 0 && age.value < 30, String(age.value));
    assert.deepEqual([age.uom, age.warn, age.crit, age.min], ['s', '600', '1200', '0']);
  });

  it('is WARNING when older than SECONDS and CRITICAL when older than --critical (default twice SECONDS)', async () => {
    const d = await stateDir('stale', 100);
    const warn = plugin(await runDrover(['check-heartbeat', '60', '--state-dir', d]));
    assert.equal(warn.state, 'WARNING');
    assert.match(warn.text, /heartbeat is 10\d s old \(warning above 60 s, critical above 120 s\)/);
    assert.ok(warn.perf.get('age')!.value >= 100);
    assert.equal(plugin(await runDrover(['check-heartbeat', '30', '--state-dir', d])).state, 'CRITICAL');
    assert.equal(plugin(await runDrover(['check-heartbeat', '30', '--critical', '300', '--state-dir', d])).state, 'WARNING');
  });

  it('is CRITICAL when the state dir has no heartbeat file; the state dir comes from DROVER_STATE_DIR too', async () => {
    const d = await stateDir('missing', null);
    const out = plugin(await runDrover(['check-heartbeat', '60'], { env: { DROVER_STATE_DIR: d } }));
    assert.equal(out.state, 'CRITICAL');
    assert.equal(out.text, `no heartbeat file ${d}/heartbeat: no agent is running with this state dir`);
    assert.equal(out.perf.size, 0);
    const fresh = await stateDir('env-fresh', 1);
    assert.equal(plugin(await runDrover(['check-heartbeat', '60'], { env: { DROVER_STATE_DIR: fresh } })).state, 'OK');
  });

  it('is UNKNOWN (3, never 2) for a missing state dir and for bad usage, with one sentence on stdout', async () => {
    const gone = plugin(await runDrover(['check-heartbeat', '60', '--state-dir', join(dir, 'nope')]));
    assert.equal(gone.state, 'UNKNOWN');
    assert.match(gone.text, /^The state dir .*nope does not exist; pass the agent's with --state-dir or DROVER_STATE_DIR\.$/);
    for (const args of [['check-heartbeat'], ['check-heartbeat', 'soon'], ['check-heartbeat', '60', '--bogus'], ['check-heartbeat', '60', '--critical', '10']]) {
      const out = plugin(await runDrover([...args, '--state-dir', dir]));
      assert.equal(out.code, 3, args.join(' '));
    }
    const help = await runDrover(['check-heartbeat', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /3 UNKNOWN/);
  });
});

describe('drover check-host and check-vm (Nagios plugins, real etcd)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('check-host: OK for an ALIVE host with a fresh summary and room, with its figures as perfdata', async () => {
    const c = cluster(etcd);
    await putHost(c, hostRecord('hv1', 'ALIVE'), true);
    await putStats(c, hostStats('hv1', [vmStats(uuidWith('aaaa0000'), 'a')]));
    const out = plugin(await c.drover(['check-host', 'hv1']));
    assert.equal(out.state, 'OK');
    assert.equal(out.text, 'host hv1 is ALIVE: load 0.52, 12.0 GiB of 16.0 GiB memory available, 60.0% of /var/lib/drover free, 1 VMs');
    assert.deepEqual([...out.perf.keys()], ['load1', 'load5', 'load15', 'mem_available', 'storage_free', 'storage_free_pct', 'vms']);
    assert.equal(out.perf.get('mem_available')!.value, 12 * GiB);
    assert.equal(out.perf.get('mem_available')!.max, String(16 * GiB));
    const pct = out.perf.get('storage_free_pct')!;
    assert.deepEqual([pct.value, pct.uom, pct.warn, pct.crit, pct.min, pct.max], [60, '%', '10:', '5:', '0', '100']);
    // The host's name from DROVER_NAME, as nrpe on the host would run it.
    assert.equal(plugin(await c.drover(['check-host'], { env: { DROVER_NAME: 'hv1' } })).state, 'OK');
  });

  it('check-host: WARNING for low free space or a stale or missing summary; CRITICAL for DEAD, failed or full storage', async () => {
    const c = cluster(etcd);
    const storage = (free: number, ok = true) => ({ path: '/var/lib/drover', total_bytes: 100 * GiB, free_bytes: free * GiB, ok, ...(ok ? {} : { error: 'the state dir is read-only (EROFS)' }) });
    await putHost(c, hostRecord('low', 'ALIVE'), true);
    await putStats(c, hostStats('low', [], { storage: storage(8) }));
    const low = plugin(await c.drover(['check-host', 'low']));
    assert.equal(low.state, 'WARNING');
    assert.match(low.text, /^storage \/var\/lib\/drover has 8\.0% free \(warning below 10%\)/);
    assert.equal(plugin(await c.drover(['check-host', 'low', '-w', '5', '-c', '2'])).state, 'OK');
    assert.equal(plugin(await c.drover(['check-host', 'low', '-w', '20', '-c', '9'])).state, 'CRITICAL');

    await putHost(c, hostRecord('stale', 'ALIVE'), true);
    await putStats(c, hostStats('stale', [], { at: new Date(Date.now() - 60_000).toISOString(), interval: 10 }));
    const stale = plugin(await c.drover(['check-host', 'stale']));
    assert.equal(stale.state, 'WARNING');
    assert.match(stale.text, /^its stats summary is \dm\d\ds old \(written every 10 s\)/);

    await putHost(c, hostRecord('nostats', 'ALIVE'), true);
    const nostats = plugin(await c.drover(['check-host', 'nostats']));
    assert.deepEqual([nostats.state, nostats.text, nostats.perf.size], ['WARNING', 'host nostats has no stats summary', 0]);

    await putHost(c, hostRecord('dead', 'ALIVE'), false); // the lease is gone, the record not yet rewritten
    const dead = plugin(await c.drover(['check-host', 'dead']));
    assert.deepEqual([dead.state, dead.text], ['CRITICAL', "host dead is DEAD (its agent's lease is gone); host dead has no stats summary"]);

    await putHost(c, hostRecord('ro', 'ALIVE'), true);
    await putStats(c, hostStats('ro', [], { storage: storage(50, false) }));
    const ro = plugin(await c.drover(['check-host', 'ro']));
    assert.equal(ro.state, 'CRITICAL');
    assert.match(ro.text, /^storage \/var\/lib\/drover failed: the state dir is read-only \(EROFS\)/);

    assert.equal(plugin(await c.drover(['check-host', 'hv9'])).state, 'CRITICAL');
  });

  it('check-host and check-vm: UNKNOWN (3) when etcd cannot be reached or the options are wrong', async () => {
    const port = await freePort();
    const host = plugin(await runDrover(['check-host', 'hv1', '--etcd', `127.0.0.1:${port}`]));
    assert.equal(host.state, 'UNKNOWN');
    assert.equal(host.text, `etcd at http://127.0.0.1:${port} is not reachable; start it with \`drover up\` or pass --etcd.`);
    assert.equal(plugin(await runDrover(['check-vm', 'web-1', '--etcd', `127.0.0.1:${port}`])).state, 'UNKNOWN');
    assert.equal(plugin(await runDrover(['check-host', '-w', '150'])).state, 'UNKNOWN');
    assert.equal(plugin(await runDrover(['check-host', '-w', '5', '-c', '10', '--etcd', `127.0.0.1:${port}`])).text, '--critical 10% must not be above --warning 5%.');
    assert.equal(plugin(await runDrover(['check-vm'])).state, 'UNKNOWN');
  });

  it('check-vm: OK when RUNNING on an ALIVE host (perfdata from the summary), WARNING when stopped, CRITICAL when failed, gone or on a DEAD host', async () => {
    const c = cluster(etcd);
    const web = uuidWith('abab0000');
    await putHost(c, hostRecord('hv1', 'ALIVE'), true);
    await c.putVm(vmRecord(web, 'web-1', { spec: { vcpus: 2, memory: 512 } }));
    await putStats(c, hostStats('hv1', [vmStats(web, 'web-1', { cpu_load: 1.5, rss_bytes: 300 * MiB, uptime_seconds: 125 })]));
    const ok = plugin(await c.drover(['check-vm', 'web-1']));
    assert.equal(ok.state, 'OK');
    assert.equal(ok.text, `VM web-1 (${web}) is RUNNING on hv1: CPU load 1.50, RSS 300.0 MiB, up 2m05s`);
    assert.deepEqual([...ok.perf.values()].map((p) => [p.label, p.value, p.uom, p.min, p.max]), [
      ['cpu_load', 1.5, '', '0', '2'],
      ['rss', 300 * MiB, 'B', '0', ''],
      ['uptime', 125, 's', '0', ''],
    ]);

    // Stopped, with the last summary taken before the stop still listing it: no figures.
    await c.putVm(vmRecord(web, 'web-1', { status: 'STOP' }));
    const stopped = plugin(await c.drover(['check-vm', 'web-1']));
    assert.deepEqual([stopped.state, stopped.text, stopped.perf.size], ['WARNING', `VM web-1 (${web}) is STOP on hv1`, 0]);
    await putStats(c, hostStats('hv1', [])); // what the agent reports once the VM no longer runs
    await c.putVm(vmRecord(web, 'web-1', { status: 'STARTING' }));
    assert.equal(plugin(await c.drover(['check-vm', 'web-1'])).state, 'WARNING');
    await c.putVm(vmRecord(web, 'web-1', { status: 'ERROR', error: 'qemu refused the disk /srv/x.raw.' }));
    const err = plugin(await c.drover(['check-vm', web]));
    assert.deepEqual([err.state, err.text], ['CRITICAL', `VM web-1 (${web}) is ERROR on hv1: qemu refused the disk /srv/x.raw`]);
    await c.putVm(vmRecord(web, 'web-1', { status: 'KILLED' }));
    assert.equal(plugin(await c.drover(['check-vm', 'web-1'])).state, 'CRITICAL');

    const gone = plugin(await c.drover(['check-vm', 'web-9']));
    assert.deepEqual([gone.state, gone.text], ['CRITICAL', 'no VM matches "web-9"']);

    const db = uuidWith('cdcd0000');
    await c.putVm(vmRecord(db, 'db-1', { host: 'hv2' }));
    await putHost(c, hostRecord('hv2', 'ALIVE'), false);
    const orphan = plugin(await c.drover(['check-vm', 'db-1']));
    assert.equal(orphan.state, 'CRITICAL');
    assert.match(orphan.text, /is RUNNING on hv2, but host hv2 is DEAD \(no figures/);

    // Two VMs share the prefix "abab": the check cannot tell which is meant.
    await c.putVm(vmRecord(uuidWith('abab0000', 2), 'web-2'));
    const ambiguous = plugin(await c.drover(['check-vm', 'abab']));
    assert.equal(ambiguous.state, 'UNKNOWN');
    assert.match(ambiguous.text, /^"abab" matches 2 VMs/);

    const json = await c.drover(['check-vm', 'web-2', '--json']);
    assert.equal(json.code, 0);
    assert.deepEqual(Object.keys(JSON.parse(json.stdout) as object), ['service', 'state', 'exit_code', 'text', 'perfdata']);
  });
});
