/**
 * The collector's pure parts (docs/metrics.md): rates from two samples,
 * /proc parsers, the storage alarm's transitions, the listen address, and
 * the collection config keys with chunter's names.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { vmStatsSchema } from '../../src/contract/host-stats.js';
import type { VmSample } from '../../src/hypervisor/hypervisor.js';
import { parseVmRss } from '../../src/hypervisor/qemu/proc.js';
import { sumBlockStats } from '../../src/hypervisor/qemu/vm-sample.js';
import { parseMeminfo, stepStorageAlarm } from '../../src/observability/host-readings.js';
import { parseListen } from '../../src/observability/metrics-server.js';
import { vmStatsFrom } from '../../src/observability/vm-stats.js';
import { mergeConfigLayers } from '../../src/config/load-config.js';

const info = { uuid: '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59', name: 'web-1', vcpus: 2, memory: 256 };
const t0 = Date.parse('2026-11-23T10:00:00Z');

function sample(over: Partial<VmSample> = {}): VmSample {
  return {
    uuid: info.uuid,
    pid: 4242,
    startedAt: new Date(t0).toISOString(),
    bootedAt: new Date(t0 + 30_000).toISOString(),
    cpuSeconds: 10,
    at: t0 + 100_000,
    rssBytes: 50 << 20,
    disk: { readBytes: 1000, writeBytes: 2000, readOps: 10, writeOps: 20 },
    net: null,
    balloonBytes: null,
    ...over,
  };
}

describe('vmStatsFrom (rates from two samples)', () => {
  it('divides each counter\'s change by the wall time between the samples', () => {
    const prev = sample();
    const cur = sample({
      cpuSeconds: 15,
      at: t0 + 110_000,
      disk: { readBytes: 11_000, writeBytes: 2000 + 40_960, readOps: 12, writeOps: 30 },
      net: { rxBytes: 500, txBytes: 100, rxPackets: 5, txPackets: 1 },
    });
    const s = vmStatsFrom(info, cur, { ...prev, net: { rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0 } });
    assert.equal(s.cpu_load, 0.5);
    assert.equal(s.disk_read_bps, 1000);
    assert.equal(s.disk_write_bps, 4096);
    assert.equal(s.net_rx_bps, 50);
    assert.equal(s.net_tx_bps, 10);
    assert.equal(s.wall_seconds, 110);
    assert.equal(s.uptime_seconds, 80);
    assert.equal(s.disk_write_ops, 30);
    assert.equal(s.memory, 256);
    assert.ok(vmStatsSchema.safeParse(s).success);
  });

  it('without a previous sample of the same process: CPU load since the start, byte rates 0', () => {
    const cur = sample({ cpuSeconds: 25 });
    for (const prev of [null, sample({ pid: 1, cpuSeconds: 1 }), sample({ startedAt: new Date(t0 - 1).toISOString() })]) {
      const s = vmStatsFrom(info, cur, prev);
      assert.equal(s.cpu_load, 0.25, 'since the process started 100 s ago');
      assert.equal(s.disk_write_bps, 0);
    }
  });

  it('keeps what cannot be measured null, never 0, and never reports a negative rate', () => {
    const s = vmStatsFrom(info, sample({ disk: { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 }, at: t0 + 101_000 }), sample());
    assert.equal(s.net_rx_bytes, null);
    assert.equal(s.net_rx_bps, null);
    assert.equal(s.balloon_bytes, null);
    assert.equal(s.disk_read_bps, 0, 'a counter that went down counts as no change');
  });
});

describe('host readings', () => {
  it('reads MemTotal, MemAvailable and Cached from /proc/meminfo', () => {
    const text = 'MemTotal:        2030000 kB\nMemFree:          100000 kB\nMemAvailable:    1500000 kB\nBuffers:           20000 kB\nCached:           700000 kB\nSwapCached:            0 kB\n';
    assert.deepEqual(parseMeminfo(text), { total_bytes: 2030000 * 1024, available_bytes: 1500000 * 1024, page_cache_bytes: 700000 * 1024 });
    assert.equal(parseMeminfo('MemTotal: 1 kB\n'), null);
  });

  it('reads VmRSS from /proc/PID/status in bytes', () => {
    assert.equal(parseVmRss('Name:\tqemu\nVmRSS:\t   51200 kB\nVmData:\t 1 kB\n'), 51200 * 1024);
    assert.equal(parseVmRss('Name:\tkthreadd\n'), null);
  });

  it('sums query-blockstats over every disk', () => {
    const stats = (rd: number, wr: number) => ({ device: '', stats: { rd_bytes: rd, wr_bytes: wr, rd_operations: 1, wr_operations: 2, flush_operations: 0 } });
    assert.deepEqual(sumBlockStats([stats(10, 20), stats(1, 2)]), { readBytes: 11, writeBytes: 22, readOps: 2, writeOps: 4 });
    assert.deepEqual(sumBlockStats([]), { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 });
  });
});

describe('storage alarm', () => {
  const disk = (freePercent: number, ok = true) => ({ path: '/var/lib/drover', total_bytes: 100 * 2 ** 30, free_bytes: freePercent * 2 ** 30, ok, ...(ok ? {} : { error: 'The state dir cannot be written: EROFS.' }) });

  it('reports once per transition: low, ok again, error', () => {
    const steps: Array<[number, boolean, string, string | undefined]> = [
      [50, true, 'ok', undefined],
      [9, true, 'low', 'host.storage_low'],
      [8, true, 'low', undefined],
      [12, true, 'ok', 'host.storage_ok'],
      [12, false, 'error', 'host.storage_error'],
      [12, false, 'error', undefined],
      [12, true, 'ok', 'host.storage_ok'],
    ];
    let state: 'ok' | 'low' | 'error' = 'ok';
    for (const [free, ok, want, event] of steps) {
      const step = stepStorageAlarm(state, disk(free, ok), 10, 'hv1');
      assert.equal(step.state, want, `${free}% ok=${ok}`);
      assert.equal(step.event?.code, event, `${free}% ok=${ok}`);
      state = step.state;
    }
  });

  it('says how much is free and where', () => {
    const step = stepStorageAlarm('ok', disk(5), 10, 'hv1');
    assert.equal(step.event?.level, 'warn');
    assert.equal(step.event?.message, 'Free space of /var/lib/drover on host hv1 is 5.0% (5.0 of 100.0 GiB), under the 10% alarm.');
    assert.match(stepStorageAlarm('ok', disk(50, false), 10, 'hv1').event?.message ?? '', /failed: The state dir cannot be written: EROFS\.$/);
  });
});

describe('metrics_listen', () => {
  it('parses HOST:PORT, [IPv6]:PORT and off', () => {
    assert.deepEqual(parseListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 });
    assert.equal(parseListen('off'), null);
  });

  it('refuses anything else with one sentence', () => {
    for (const bad of ['9464', '127.0.0.1', ':9464', '1.2.3.4:99999', 'a b:1', '::1:9464']) {
      assert.throws(() => parseListen(bad), /is not HOST:PORT .* or "off"\.$/, bad);
    }
  });
});

describe('collection config keys', () => {
  const base = { name: 'hv1', state_dir: '/var/lib/drover' };

  it('has chunter\'s defaults', () => {
    const c = mergeConfigLayers([{ source: 'f', values: base }]);
    assert.deepEqual(
      [c.vm_stats_interval, c.process_check_interval, c.storage_interval, c.memory_interval, c.storage_free_alarm, c.metrics_listen],
      [10, 1, 15, 30, 10, '127.0.0.1:9464'],
    );
  });

  it('says which key chunter\'s names became', () => {
    const renamed: Array<[string, string]> = [
      ['zonemon_interval', 'process_check_interval'],
      ['update_services_interval', 'vm_stats_interval'],
      ['zpool_interval', 'storage_interval'],
      ['arc_interval', 'memory_interval'],
    ];
    for (const [old, now] of renamed) {
      assert.throws(() => mergeConfigLayers([{ source: 'f.toml', values: { ...base, [old]: 5 } }]), new RegExp(`"${old}" in f.toml is not known; use "${now}" instead`));
    }
  });

  it('refuses a bad metrics_listen or alarm naming the key', () => {
    assert.throws(() => mergeConfigLayers([{ source: 'f.toml', values: { ...base, metrics_listen: '9464' } }]), /Config key "metrics_listen" in f.toml is invalid: must be HOST:PORT/);
    assert.throws(() => mergeConfigLayers([{ source: 'f.toml', values: { ...base, storage_free_alarm: 120 } }]), /"storage_free_alarm"/);
  });

  it('takes DROVER_METRICS_LISTEN from the environment', async () => {
    const { envLayer } = await import('../../src/config/load-config.js');
    const c = mergeConfigLayers([{ source: 'f', values: base }, envLayer({ DROVER_METRICS_LISTEN: 'off' })]);
    assert.equal(c.metrics_listen, 'off');
  });
});
