/**
 * `drover check-host [NAME]`: a host as etcd shows it, in Nagios terms.
 *
 *   no host record, host DEAD (lease gone or record says so)   CRITICAL
 *   storage not ok, or free below --critical percent            CRITICAL
 *   free below --warning percent                                WARNING
 *   no stats summary, an unreadable one, or a stale one         WARNING
 *   otherwise                                                   OK
 *
 * Perfdata: load1/5/15, mem_available (bytes, max = total), storage_free
 * (bytes) and storage_free_pct (with the thresholds as ranges), vms.
 */
import type { StoredHost } from '../../store/host-repository.js';
import { isStale, summaryAgeSeconds, type StoredHostStats } from '../../store/stats-repository.js';
import { formatElapsed, formatFixed, formatSize } from '../output/units.js';
import { worse, type CheckResult, type PerfDatum, type PluginState } from './plugin-output.js';

export interface StorageThresholds {
  /** Percent free below which the check warns. */
  warning: number;
  /** Percent free below which it is critical. */
  critical: number;
}

export function evaluateHost(name: string, host: StoredHost | null, summary: StoredHostStats | null, t: StorageThresholds, now: Date): CheckResult {
  let state: PluginState = 'OK';
  const problems: string[] = [];
  const flag = (s: PluginState, text: string) => {
    state = worse(state, s);
    problems.push(text);
  };
  if (!host) flag('CRITICAL', `host ${name} has no host record`);
  else if (host.status !== 'ALIVE') flag('CRITICAL', `host ${name} is DEAD (${host.aliveKey ? 'its record says so' : "its agent's lease is gone"})`);

  const stats = summary?.stats ?? null;
  if (!summary) flag('WARNING', `host ${name} has no stats summary`);
  else if (!stats) flag('WARNING', summary.error ?? 'its stats summary cannot be read');
  const perfdata: PerfDatum[] = [];
  const figures: string[] = [];
  if (stats) {
    const age = summaryAgeSeconds(stats, now);
    if (isStale(stats, now)) flag('WARNING', `its stats summary is ${formatElapsed(age)} old (written every ${stats.interval} s)`);
    const { storage, memory } = stats;
    const freePct = storage.total_bytes > 0 ? (storage.free_bytes / storage.total_bytes) * 100 : 0;
    if (!storage.ok) flag('CRITICAL', `storage ${storage.path} failed: ${storage.error ?? 'no reason given'}`);
    else if (freePct < t.critical) flag('CRITICAL', `storage ${storage.path} has ${freePct.toFixed(1)}% free (critical below ${t.critical}%)`);
    else if (freePct < t.warning) flag('WARNING', `storage ${storage.path} has ${freePct.toFixed(1)}% free (warning below ${t.warning}%)`);
    figures.push(
      `load ${formatFixed(stats.load[0])}`,
      `${formatSize(memory.available_bytes)} of ${formatSize(memory.total_bytes)} memory available`,
      `${freePct.toFixed(1)}% of ${storage.path} free`,
      `${stats.vms.length} VMs`,
    );
    perfdata.push(
      { label: 'load1', value: stats.load[0], min: 0 },
      { label: 'load5', value: stats.load[1], min: 0 },
      { label: 'load15', value: stats.load[2], min: 0 },
      { label: 'mem_available', value: memory.available_bytes, uom: 'B', min: 0, max: memory.total_bytes },
      { label: 'storage_free', value: storage.free_bytes, uom: 'B', min: 0, max: storage.total_bytes },
      { label: 'storage_free_pct', value: Math.round(freePct * 10) / 10, uom: '%', warn: `${t.warning}:`, crit: `${t.critical}:`, min: 0, max: 100 },
      { label: 'vms', value: stats.vms.length, min: 0 },
    );
  }
  const head = problems.length > 0 ? problems.join('; ') : `host ${name} is ALIVE`;
  return { state, text: figures.length > 0 ? `${head}: ${figures.join(', ')}` : head, perfdata };
}
