/**
 * `drover check-vm VM`: a VM's status as a Nagios state, with its figures
 * from its host's stats summary as perfdata.
 *
 *   RUNNING (MIGRATING, REQUESTED_MIGRATE: running too) on an ALIVE host   OK
 *   the same on a DEAD host (the record is stale; the VM may be down)       CRITICAL
 *   STOP, and the transitional words (REQUESTED_*, SCHEDULED, STARTING,
 *   TO_STOP, STOPPING)                                                      WARNING
 *   KILLED, ERROR, no such VM                                               CRITICAL
 *   a status drover does not know                                           UNKNOWN
 *
 * Missing or stale figures do not change the state (check-host reports the
 * summary's freshness); the text says so. An ended VM (STOP, KILLED, ERROR)
 * gets no figures, even from a summary taken before it ended.
 */
import type { HostStats } from '../../contract/host-stats.js';
import { VM_STATUSES } from '../../contract/status.js';
import type { StoredHost } from '../../store/host-repository.js';
import { isStale, summaryAgeSeconds } from '../../store/stats-repository.js';
import { rawObject, type StoredVm } from '../../store/vm-repository.js';
import { formatElapsed, formatFixed, formatSize } from '../output/units.js';
import { ENDED_STATUSES } from '../scan/scan-rows.js';
import { vmLabel } from '../../vm-ops/vm-view.js';
import type { CheckResult, PerfDatum, PluginState } from './plugin-output.js';

const RUNNING: ReadonlySet<string> = new Set(['RUNNING', 'MIGRATING', 'REQUESTED_MIGRATE']);
const FAILED: ReadonlySet<string> = new Set(['KILLED', 'ERROR']);

export function vmStatusState(status: string): PluginState {
  if (RUNNING.has(status)) return 'OK';
  if (FAILED.has(status)) return 'CRITICAL';
  return (VM_STATUSES as readonly string[]).includes(status) ? 'WARNING' : 'UNKNOWN';
}

export function evaluateVm(vm: StoredVm, host: StoredHost | null, stats: HostStats | null, now: Date): CheckResult {
  const rec = rawObject(vm.raw) ?? {};
  const status = typeof rec.status === 'string' ? rec.status : '(none)';
  const hostName = typeof rec.host === 'string' && rec.host !== '' ? rec.host : null;
  let state = vmStatusState(status);
  let text = `VM ${vmLabel(vm)} is ${status}${hostName ? ` on ${hostName}` : ''}`;
  if (FAILED.has(status) && typeof rec.error === 'string' && rec.error !== '') text += `: ${rec.error.replace(/\.$/, '')}`;
  if (state === 'OK' && hostName && host?.status !== 'ALIVE') {
    state = 'CRITICAL';
    text += `, but host ${hostName} is ${host ? host.status : 'unknown'}`;
  }
  const spec = typeof rec.spec === 'object' && rec.spec !== null ? (rec.spec as Record<string, unknown>) : {};
  const measured = ENDED_STATUSES.has(status) ? undefined : stats?.vms.find((v) => v.uuid === vm.uuid);
  const perfdata: PerfDatum[] = [];
  if (stats && measured) {
    const vcpus = typeof spec.vcpus === 'number' ? spec.vcpus : measured.vcpus;
    perfdata.push(
      { label: 'cpu_load', value: measured.cpu_load, min: 0, max: vcpus },
      { label: 'rss', value: measured.rss_bytes, uom: 'B', min: 0 },
      { label: 'uptime', value: Math.round(measured.uptime_seconds), uom: 's', min: 0 },
    );
    const age = isStale(stats, now) ? ` (stats ${formatElapsed(summaryAgeSeconds(stats, now))} old, stale)` : '';
    text += `: CPU load ${formatFixed(measured.cpu_load)}, RSS ${formatSize(measured.rss_bytes)}, up ${formatElapsed(measured.uptime_seconds)}${age}`;
  } else if (RUNNING.has(status)) {
    text += ' (no figures: its host has no current stats for it)';
  }
  return { state, text, perfdata };
}
