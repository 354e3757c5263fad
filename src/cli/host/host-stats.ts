/**
 * `drover host stats [NAME]`: the host figures of each stats summary
 * (`P/stats/<name>`: load, memory, storage, VM count), joined with the host
 * records for their lease-aware status. A host with a record but no summary
 * (an agent without a collector, or one that has not written yet) is shown
 * with empty figures; so is one whose summary does not match the schema,
 * with `error` saying why.
 */
import { DroverError } from '../../lib/errors.js';
import type { StoredHost } from '../../store/host-repository.js';
import { isStale, STALE_INTERVALS, summaryAgeSeconds, type StoredHostStats } from '../../store/stats-repository.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { printJson } from '../output/print.js';
import { formatTable } from '../output/table.js';
import { formatElapsed, formatFixed, formatSize, NOT_MEASURED } from '../output/units.js';
import { withStore } from '../store-session.js';

/** One host's figures as `--json` prints them (docs/cli.md). */
export interface HostFigures {
  name: string;
  /** ALIVE or DEAD (lease-aware); null when there is no host record. */
  status: string | null;
  stats_at: string | null;
  age_seconds: number | null;
  stale: boolean;
  interval: number | null;
  load: [number, number, number] | null;
  cpus: number | null;
  memory: { total_bytes: number; available_bytes: number; page_cache_bytes: number } | null;
  storage: { path: string; total_bytes: number; free_bytes: number; ok: boolean; error?: string } | null;
  vms: number | null;
  truncated: boolean;
  /** Why there are no figures: no summary, or one that cannot be read. */
  error: string | null;
}

export function hostFigures(name: string, host: StoredHost | undefined, summary: StoredHostStats | undefined, now: Date): HostFigures {
  const s = summary?.stats ?? null;
  const error = summary === undefined ? `Host ${name} has no stats summary.` : summary.error;
  return {
    name,
    status: host ? host.status : null,
    stats_at: s ? s.at : null,
    age_seconds: s ? Math.round(summaryAgeSeconds(s, now) * 10) / 10 : null,
    stale: s ? isStale(s, now) : false,
    interval: s ? s.interval : null,
    load: s ? s.load : null,
    cpus: s ? s.cpus : null,
    memory: s ? { total_bytes: s.memory.total_bytes, available_bytes: s.memory.available_bytes, page_cache_bytes: s.memory.page_cache_bytes } : null,
    storage: s ? { path: s.storage.path, total_bytes: s.storage.total_bytes, free_bytes: s.storage.free_bytes, ok: s.storage.ok, ...(s.storage.error !== undefined ? { error: s.storage.error } : {}) } : null,
    vms: s ? s.vms.length : null,
    truncated: s?.truncated === true,
    error,
  };
}

/** Reads the host records and summaries, joined by name and sorted; `name` narrows to one host. */
export async function readHostFigures(flags: GlobalFlags, ctx: CliContext, name?: string): Promise<HostFigures[]> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const [hosts, summaries] = await withStore(opts, async (store) =>
    name === undefined
      ? Promise.all([store.hosts.list(), store.stats.list()])
      : Promise.all([store.hosts.get(name).then((h) => (h ? [h] : [])), store.stats.get(name).then((s) => (s ? [s] : []))]),
  );
  const names = [...new Set([...hosts.map((h) => h.name), ...summaries.map((s) => s.name)])].sort();
  if (name !== undefined && names.length === 0) throw new DroverError('NOT_FOUND', `No host is named ${JSON.stringify(name)}.`);
  const now = new Date();
  return names.map((n) => hostFigures(n, hosts.find((h) => h.name === n), summaries.find((s) => s.name === n), now));
}

const load = (f: HostFigures) => (f.load ? f.load.map((l) => formatFixed(l)).join(' ') : NOT_MEASURED);
const age = (f: HostFigures) => (f.age_seconds === null ? NOT_MEASURED : `${formatElapsed(f.age_seconds)}${f.stale ? '*' : ''}`);
const percent = (part: number, whole: number) => (whole > 0 ? `${Math.round((part / whole) * 100)}%` : NOT_MEASURED);

const COLUMNS = ['name', 'status', 'load', 'mem_total', 'mem_avail', 'page_cache', 'storage_free', 'storage_total', 'storage', 'vms', 'age'];
const RIGHT = [false, false, true, true, true, true, true, true, false, true, true];

function tableRow(f: HostFigures): string[] {
  return [
    f.name,
    f.status ?? NOT_MEASURED,
    load(f),
    formatSize(f.memory?.total_bytes),
    formatSize(f.memory?.available_bytes),
    formatSize(f.memory?.page_cache_bytes),
    formatSize(f.storage?.free_bytes),
    formatSize(f.storage?.total_bytes),
    f.storage ? (f.storage.ok ? 'ok' : 'FAILED') : NOT_MEASURED,
    f.vms === null ? NOT_MEASURED : String(f.vms),
    age(f),
  ];
}

function details(f: HostFigures): string {
  const lines = [`Host ${f.name}: ${f.status ?? 'no host record'}`];
  if (f.error !== null) return `${[...lines, `  ${f.error}`].join('\n')}\n`;
  lines.push(`  stats      taken ${f.stats_at ?? '-'}, ${age(f)} ago (every ${f.interval ?? '-'}s)${f.stale ? ': STALE' : ''}`);
  lines.push(`  load       ${load(f)} (${f.cpus ?? '-'} CPUs)`);
  if (f.memory) {
    const m = f.memory;
    lines.push(`  memory     ${formatSize(m.available_bytes)} available of ${formatSize(m.total_bytes)} (${percent(m.available_bytes, m.total_bytes)}), page cache ${formatSize(m.page_cache_bytes)}`);
  }
  if (f.storage) {
    const st = f.storage;
    const state = st.ok ? 'ok' : `FAILED: ${st.error ?? 'unknown error'}`;
    lines.push(`  storage    ${st.path}: ${formatSize(st.free_bytes)} free of ${formatSize(st.total_bytes)} (${percent(st.free_bytes, st.total_bytes)}), ${state}`);
  }
  lines.push(`  VMs        ${f.vms ?? '-'}${f.truncated ? ' (more not listed: the summary is truncated)' : ''}`);
  return `${lines.join('\n')}\n`;
}

export async function hostStatsAction(ctx: CliContext, name: string | undefined, flags: GlobalFlags & { header: boolean }): Promise<void> {
  const figures = await readHostFigures(flags, ctx, name);
  if (resolveGlobalOptions(flags, ctx.env, ctx.io).json) return printJson(ctx.io, name === undefined ? figures : figures[0]);
  if (name !== undefined) return void ctx.io.stdout.write(details(figures[0]!));
  ctx.io.stdout.write(formatTable(COLUMNS, figures.map(tableRow), { header: flags.header, rightAlign: RIGHT }));
  const stale = figures.filter((f) => f.stale);
  if (flags.header && stale.length > 0) ctx.io.stdout.write(`* stale: older than ${STALE_INTERVALS} stats intervals (${stale.map((f) => f.name).join(', ')}).\n`);
}
