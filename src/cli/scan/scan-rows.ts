/**
 * `drover scan`'s rows: every VM record (`P/vm/*`) joined with the figures
 * its host's agent last measured for it (`P/stats/<host>`), then filtered,
 * sorted and formatted. Pure: the command reads etcd and hands the lists in.
 *
 * The JSON row (ScanRow) is a stable interface (docs/cli.md): raw numbers in
 * the units their names say, null where a figure was not measured (the VM
 * does not run, its host has no summary, user-mode networking has no
 * counters). Figures come from the summary of the host the record names, and
 * only when that summary lists the VM's uuid (it has a qemu process there)
 * and the record does not say it ended (STOP, KILLED, ERROR).
 */
import type { HostStats, VmStats } from '../../contract/host-stats.js';
import { DroverError } from '../../lib/errors.js';
import { isStale, summaryAgeSeconds, type StoredHostStats } from '../../store/stats-repository.js';
import type { StoredVm } from '../../store/vm-repository.js';
import { SCAN_FIELD_ALIASES } from '../output/columns.js';
import { formatCell, matchesFilters, type FieldFilter } from '../output/fields.js';
import { formatElapsed, formatFixed, formatRate, formatSize } from '../output/units.js';
import { vmObject } from '../../vm-ops/vm-view.js';

export interface ScanRow {
  uuid: string;
  name: string | null;
  host: string | null;
  status: string | null;
  vcpus: number | null;
  /** MiB, from the record's spec. */
  memory: number | null;
  pid: number | null;
  cpu_load: number | null;
  cpu_seconds: number | null;
  wall_seconds: number | null;
  uptime_seconds: number | null;
  rss_bytes: number | null;
  disk_read_bps: number | null;
  disk_write_bps: number | null;
  disk_read_bytes: number | null;
  disk_write_bytes: number | null;
  net_rx_bps: number | null;
  net_tx_bps: number | null;
  net_rx_bytes: number | null;
  net_tx_bytes: number | null;
  /** When the host's summary the figures come from was taken. */
  stats_at: string | null;
  stats_age_seconds: number | null;
  /** The figures come from a summary older than STALE_INTERVALS of its interval. */
  stale: boolean;
}

/**
 * Statuses in which the VM surely has no qemu process. A summary taken just
 * before a stop still lists the VM; its figures are not shown once the record
 * says it ended.
 */
export const ENDED_STATUSES: ReadonlySet<string> = new Set(['STOP', 'KILLED', 'ERROR']);

/** The row's fields that come from the stats summary (marked when it is stale). */
const MEASURED: ReadonlySet<string> = new Set([
  'pid', 'cpu_load', 'cpu_seconds', 'wall_seconds', 'uptime_seconds', 'rss_bytes',
  'disk_read_bps', 'disk_write_bps', 'disk_read_bytes', 'disk_write_bytes',
  'net_rx_bps', 'net_tx_bps', 'net_rx_bytes', 'net_tx_bytes',
]);

const EMPTY_ROW: Omit<ScanRow, 'uuid' | 'name' | 'host' | 'status' | 'vcpus' | 'memory'> = {
  pid: null, cpu_load: null, cpu_seconds: null, wall_seconds: null, uptime_seconds: null, rss_bytes: null,
  disk_read_bps: null, disk_write_bps: null, disk_read_bytes: null, disk_write_bytes: null,
  net_rx_bps: null, net_tx_bps: null, net_rx_bytes: null, net_tx_bytes: null,
  stats_at: null, stats_age_seconds: null, stale: false,
};

/** Every field a row has, in JSON order: what -o, --sort and filters accept (besides the aliases). */
export const SCAN_FIELDS: readonly string[] = ['uuid', 'name', 'host', 'status', 'vcpus', 'memory', ...Object.keys(EMPTY_ROW)];

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function figures(vm: VmStats, summary: HostStats, now: Date): Partial<ScanRow> {
  return {
    pid: vm.pid,
    cpu_load: vm.cpu_load,
    cpu_seconds: vm.cpu_seconds,
    wall_seconds: vm.wall_seconds,
    uptime_seconds: vm.uptime_seconds,
    rss_bytes: vm.rss_bytes,
    disk_read_bps: vm.disk_read_bps,
    disk_write_bps: vm.disk_write_bps,
    disk_read_bytes: vm.disk_read_bytes,
    disk_write_bytes: vm.disk_write_bytes,
    net_rx_bps: vm.net_rx_bps,
    net_tx_bps: vm.net_tx_bps,
    net_rx_bytes: vm.net_rx_bytes,
    net_tx_bytes: vm.net_tx_bytes,
    stats_at: summary.at,
    stats_age_seconds: Math.round(summaryAgeSeconds(summary, now) * 10) / 10,
    stale: isStale(summary, now),
  };
}

export function buildScanRows(vms: readonly StoredVm[], summaries: readonly StoredHostStats[], now: Date): ScanRow[] {
  const byHost = new Map<string, HostStats>();
  for (const s of summaries) if (s.stats) byHost.set(s.name, s.stats);
  return vms.map((vm) => {
    const obj = vmObject(vm);
    const spec = typeof obj.spec === 'object' && obj.spec !== null ? (obj.spec as Record<string, unknown>) : {};
    const host = str(obj.host);
    const summary = host !== null ? byHost.get(host) : undefined;
    const status = str(obj.status);
    const measured = status !== null && ENDED_STATUSES.has(status) ? undefined : summary?.vms.find((v) => v.uuid === vm.uuid);
    return {
      uuid: vm.uuid,
      name: str(obj.name),
      host,
      status,
      vcpus: num(spec.vcpus),
      memory: num(spec.memory),
      ...EMPTY_ROW,
      ...(summary && measured ? figures(measured, summary, now) : {}),
    };
  });
}

/** A column name or alias as the row field it shows; a field rows do not have is a usage error. */
export function scanField(column: string, what: string): keyof ScanRow {
  const field = SCAN_FIELD_ALIASES[column] ?? column;
  if (!SCAN_FIELDS.includes(field)) {
    const names = [...Object.keys(SCAN_FIELD_ALIASES), ...SCAN_FIELDS].join(', ');
    throw new DroverError('USAGE', `${what} ${JSON.stringify(column)} is not a scan column; use one of ${names}.`);
  }
  return field as keyof ScanRow;
}

export interface ScanSelection {
  filters: readonly FieldFilter[];
  /** A column or field name; rows without a value sort last either way. */
  sort: string;
  reverse: boolean;
}

export function selectScanRows(rows: readonly ScanRow[], sel: ScanSelection): ScanRow[] {
  for (const f of sel.filters) scanField(f.field, 'Filter field');
  const key = scanField(sel.sort, 'Sort column');
  const dir = sel.reverse ? -1 : 1;
  const byName = (a: ScanRow, b: ScanRow) => (a.name ?? '').localeCompare(b.name ?? '') || a.uuid.localeCompare(b.uuid);
  return rows
    .filter((r) => matchesFilters(r, sel.filters, (f) => SCAN_FIELD_ALIASES[f] ?? f))
    .sort((a, b) => {
      const x = a[key];
      const y = b[key];
      if (x === null || y === null) return x === y ? byName(a, b) : x === null ? 1 : -1;
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return c !== 0 ? c * dir : byName(a, b);
    });
}

/** One field as a table cell, in human units (the unit is in the field's name). */
export function formatScanCell(row: ScanRow, field: keyof ScanRow): string {
  const v = row[field];
  let text: string;
  if (field === 'memory') text = formatSize(typeof v === 'number' ? v * 1024 * 1024 : null);
  else if (field === 'cpu_load') text = formatFixed(v as number | null);
  else if (field.endsWith('_bps')) text = formatRate(v as number | null);
  else if (field.endsWith('_bytes')) text = formatSize(v as number | null);
  else if (field.endsWith('_seconds')) text = formatElapsed(v as number | null);
  else text = formatCell(v);
  return row.stale && MEASURED.has(field) && text !== '-' ? `${text}*` : text;
}

const TEXT_FIELDS: ReadonlySet<string> = new Set(['uuid', 'name', 'host', 'status', 'stats_at', 'stale']);

export interface ScanTable {
  columns: string[];
  rows: string[][];
  rightAlign: boolean[];
  /** One line per stale host the shown figures come from. */
  notes: string[];
}

export function scanTable(rows: readonly ScanRow[], columns: readonly string[]): ScanTable {
  const fields = columns.map((c) => scanField(c, 'Column'));
  const stale = new Map<string, number>();
  for (const r of rows) if (r.stale && r.host !== null && r.stats_age_seconds !== null) stale.set(r.host, r.stats_age_seconds);
  return {
    columns: [...columns],
    rows: rows.map((r) => fields.map((f) => formatScanCell(r, f))),
    rightAlign: fields.map((f) => !TEXT_FIELDS.has(f)),
    notes: [...stale].sort().map(([host, age]) => `* stale: the stats summary of host ${host} is ${formatElapsed(age)} old.`),
  };
}

/** `--json -o`: only the fields of those columns, under their field names. */
export function scanJson(rows: readonly ScanRow[], columns: readonly string[] | null): object[] {
  if (!columns) return [...rows];
  const fields = columns.map((c) => scanField(c, 'Column'));
  return rows.map((r) => Object.fromEntries(fields.map((f) => [f, r[f]])));
}
