import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { HostFigures } from '../../src/cli/host/host-stats.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { GiB, hostRecord, hostStats, putHost, putStats, vmStats } from './fleet-fixture.js';
import { cluster, lines, stdoutJson, uuidWith, type Cluster } from './helpers.js';

/** hv1: ALIVE with a fresh summary and two VMs; hv2: DEAD with a stale one; hv3: a record without a summary. */
async function hosts(c: Cluster): Promise<void> {
  await putHost(c, hostRecord('hv1', 'ALIVE'), true);
  await putStats(c, hostStats('hv1', [vmStats(uuidWith('11110000'), 'a'), vmStats(uuidWith('22220000'), 'b')]));
  await putHost(c, hostRecord('hv2', 'ALIVE'), false);
  await putStats(
    c,
    hostStats('hv2', [], {
      at: new Date(Date.now() - 300_000).toISOString(),
      interval: 10,
      load: [3.25, 2, 1],
      storage: { path: '/srv/drover', total_bytes: 100 * GiB, free_bytes: 1 * GiB, ok: false, error: 'the state dir is read-only (EROFS)' },
    }),
  );
  await putHost(c, hostRecord('hv3', 'ALIVE'), true);
}

describe('drover host stats (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('lists every host\'s figures in human units, with the lease-aware status, "-" without a summary and stale ages marked', async () => {
    const c = cluster(etcd);
    await hosts(c);
    const res = await c.drover(['host', 'stats']);
    assert.equal(res.code, 0, res.stderr);
    const rows = lines(res.stdout).map((l) => l.trim().split(/\s{2,}/));
    assert.deepEqual(rows[0], ['NAME', 'STATUS', 'LOAD', 'MEM_TOTAL', 'MEM_AVAIL', 'PAGE_CACHE', 'STORAGE_FREE', 'STORAGE_TOTAL', 'STORAGE', 'VMS', 'AGE']);
    assert.deepEqual(rows[1]!.slice(0, 10), ['hv1', 'ALIVE', '0.52 0.40 0.31', '16.0 GiB', '12.0 GiB', '2.0 GiB', '120.0 GiB', '200.0 GiB', 'ok', '2']);
    assert.match(rows[1]![10]!, /^\d+s$/);
    assert.deepEqual(rows[2]!.slice(0, 10), ['hv2', 'DEAD', '3.25 2.00 1.00', '16.0 GiB', '12.0 GiB', '2.0 GiB', '1.0 GiB', '100.0 GiB', 'FAILED', '0']);
    assert.match(rows[2]![10]!, /^5m\d\ds\*$/);
    assert.deepEqual(rows[3], ['hv3', 'ALIVE', '-', '-', '-', '-', '-', '-', '-', '-', '-']);
    assert.deepEqual(rows[4], ['* stale: older than 3 stats intervals (hv2).']);
  });

  it('shows one host in detail, as JSON with raw numbers, and fails for an unknown one', async () => {
    const c = cluster(etcd);
    await hosts(c);
    const one = await c.drover(['host', 'stats', 'hv2']);
    assert.equal(one.code, 0, one.stderr);
    const text = lines(one.stdout);
    assert.equal(text[0], 'Host hv2: DEAD');
    assert.match(text[1]!, /^ {2}stats {6}taken \S+Z, 5m\d\ds\* ago \(every 10s\): STALE$/);
    assert.deepEqual(text.slice(2), [
      '  load       3.25 2.00 1.00 (8 CPUs)',
      '  memory     12.0 GiB available of 16.0 GiB (75%), page cache 2.0 GiB',
      '  storage    /srv/drover: 1.0 GiB free of 100.0 GiB (1%), FAILED: the state dir is read-only (EROFS)',
      '  VMs        0',
    ]);
    assert.equal((await c.drover(['host', 'stats', 'hv3'])).stdout, 'Host hv3: ALIVE\n  Host hv3 has no stats summary.\n');

    const json = stdoutJson<HostFigures>(await c.drover(['host', 'stats', 'hv1', '--json']));
    assert.equal(json.name, 'hv1');
    assert.equal(json.status, 'ALIVE');
    assert.deepEqual(json.load, [0.52, 0.4, 0.31]);
    assert.deepEqual(json.memory, { total_bytes: 16 * GiB, available_bytes: 12 * GiB, page_cache_bytes: 2 * GiB });
    assert.deepEqual(json.storage, { path: '/var/lib/drover', total_bytes: 200 * GiB, free_bytes: 120 * GiB, ok: true });
    assert.equal(json.vms, 2);
    assert.equal(json.stale, false);
    assert.equal(json.error, null);
    const all = stdoutJson<HostFigures[]>(await c.drover(['host', 'stats', '--json']));
    assert.deepEqual(all.map((h) => [h.name, h.status, h.stale, h.error]), [
      ['hv1', 'ALIVE', false, null],
      ['hv2', 'DEAD', true, null],
      ['hv3', 'ALIVE', false, 'Host hv3 has no stats summary.'],
    ]);

    const missing = await c.drover(['host', 'stats', 'hv9']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'drover: No host is named "hv9".\n');
  });
});
