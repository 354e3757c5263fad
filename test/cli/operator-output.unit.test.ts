import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateHeartbeat } from '../../src/cli/checks/check-heartbeat.js';
import { vmStatusState } from '../../src/cli/checks/check-vm.js';
import { formatPerfDatum, formatPluginLine, worse } from '../../src/cli/checks/plugin-output.js';
import { matchesValue } from '../../src/cli/output/fields.js';
import { formatElapsed, formatRate, formatSize } from '../../src/cli/output/units.js';
import { selectScanRows, type ScanRow } from '../../src/cli/scan/scan-rows.js';
import { parseSince } from '../../src/cli/vm/vm-events.js';
import { VM_STATUSES } from '../../src/contract/status.js';
import { DroverError } from '../../src/lib/errors.js';

describe('operator command output (unit)', () => {
  it('formats elapsed times as their two largest units, sizes and rates in binary units, "-" when unmeasured', () => {
    assert.deepEqual([0, 42, 59.9, 60, 427, 3599, 3600, 11525, 86399, 86400, 183600].map(formatElapsed), [
      '0s', '42s', '59s', '1m00s', '7m07s', '59m59s', '1h00m', '3h12m', '23h59m', '1d00h', '2d03h',
    ]);
    assert.equal(formatElapsed(null), '-');
    assert.equal(formatRate(1.2 * 1024 * 1024), '1.2 MiB/s');
    assert.equal(formatRate(0), '0 B/s');
    assert.equal(formatRate(null), '-');
    assert.equal(formatSize(3 * 1024 ** 3), '3.0 GiB');
  });

  it('matches filter globs over the whole value and compares other values exactly', () => {
    assert.equal(matchesValue('web-1', 'web-*'), true);
    assert.equal(matchesValue('db-web-1', 'web-*'), false);
    assert.equal(matchesValue('hv1', 'hv?'), true);
    assert.equal(matchesValue('hv10', 'hv?'), false);
    assert.equal(matchesValue('a.b', 'a.*'), true);
    assert.equal(matchesValue('axb', 'a.b'), false); // "." is not a wildcard
    assert.equal(matchesValue('', ''), true);
  });

  it('writes Nagios perfdata: quoted labels, units, thresholds, trailing empty fields dropped', () => {
    assert.equal(formatPerfDatum({ label: 'age', value: 12.34, uom: 's', warn: 600, crit: 1200, min: 0 }), "'age'=12.34s;600;1200;0");
    assert.equal(formatPerfDatum({ label: "it's", value: 0.1 + 0.2 }), "'it''s'=0.3");
    assert.equal(formatPerfDatum({ label: 'free', value: 40, uom: '%', warn: '10:', crit: '5:', min: 0, max: 100 }), "'free'=40%;10:;5:;0;100");
    assert.equal(formatPerfDatum({ label: 'rss', value: 5, uom: 'B', max: 9 }), "'rss'=5B;;;;9");
    assert.equal(formatPluginLine('VM', { state: 'OK', text: 'a | b\nc', perfdata: [] }), 'VM OK - a / b c\n');
    assert.equal(worse('OK', 'UNKNOWN'), 'UNKNOWN');
    assert.equal(worse('CRITICAL', 'WARNING'), 'CRITICAL');
    assert.equal(worse('UNKNOWN', 'WARNING'), 'WARNING');
  });

  it('grades a heartbeat at its boundaries: equal to SECONDS is still OK', () => {
    const t = { warning: 60, critical: 120 };
    assert.equal(evaluateHeartbeat(60, '/s/heartbeat', t).state, 'OK');
    assert.equal(evaluateHeartbeat(60.1, '/s/heartbeat', t).state, 'WARNING');
    assert.equal(evaluateHeartbeat(120, '/s/heartbeat', t).state, 'WARNING');
    assert.equal(evaluateHeartbeat(120.1, '/s/heartbeat', t).state, 'CRITICAL');
    assert.equal(evaluateHeartbeat(null, '/s/heartbeat', t).state, 'CRITICAL');
  });

  it('gives every VM status word a Nagios state, and UNKNOWN to words drover does not know', () => {
    const states = Object.fromEntries(VM_STATUSES.map((s) => [s, vmStatusState(s)]));
    assert.deepEqual(states, {
      REQUESTED_NEW: 'WARNING', REQUESTED_START: 'WARNING', TO_STOP: 'WARNING', REQUESTED_RESTART: 'WARNING', REQUESTED_DELETE: 'WARNING',
      REQUESTED_MIGRATE: 'OK', SCHEDULED: 'WARNING', STARTING: 'WARNING', RUNNING: 'OK', STOPPING: 'WARNING', STOP: 'WARNING',
      KILLED: 'CRITICAL', ERROR: 'CRITICAL', MIGRATING: 'OK',
    });
    assert.equal(vmStatusState('PAUSED'), 'UNKNOWN');
  });

  it('reads --since as an ISO time or an age, and refuses anything else as a usage error', () => {
    const now = new Date('2026-11-23T08:00:00.000Z');
    assert.equal(parseSince('90s', now).toISOString(), '2026-11-23T07:58:30.000Z');
    assert.equal(parseSince('2h', now).toISOString(), '2026-11-23T06:00:00.000Z');
    assert.equal(parseSince('1d', now).toISOString(), '2026-11-22T08:00:00.000Z');
    assert.equal(parseSince('2026-11-22T09:00:00Z', now).toISOString(), '2026-11-22T09:00:00.000Z');
    assert.throws(() => parseSince('yesterday', now), (e: unknown) => e instanceof DroverError && e.code === 'USAGE');
  });

  it('sorts scan rows by a figure with unmeasured rows last in both directions, ties by name', () => {
    const row = (name: string, cpu: number | null) => ({ uuid: name, name, cpu_load: cpu }) as unknown as ScanRow;
    const rows = [row('c', 0.5), row('a', null), row('b', 0.5), row('d', 2)];
    const sel = { filters: [], sort: 'cpu', reverse: false };
    assert.deepEqual(selectScanRows(rows, sel).map((r) => r.name), ['b', 'c', 'd', 'a']);
    assert.deepEqual(selectScanRows(rows, { ...sel, reverse: true }).map((r) => r.name), ['d', 'b', 'c', 'a']);
  });
});
