/**
 * What the `drover host` commands do; loaded on demand by commands/host.ts.
 * A host shows ALIVE only when its record says ALIVE and its lease-held
 * alive key exists (HostRepository).
 */
import { DroverError } from '../../lib/errors.js';
import type { StoredHost } from '../../store/host-repository.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { DEFAULT_HOST_COLUMNS } from '../output/columns.js';
import { formatCell, getField, parseColumns, pickFields } from '../output/fields.js';
import { printJson } from '../output/print.js';
import { formatTable } from '../output/table.js';
import { printProgress } from '../output/print.js';
import { setHostDrained } from '../../vm-ops/host-drain.js';
import { withStore } from '../store-session.js';

export interface HostListFlags extends GlobalFlags {
  output?: string;
  header: boolean;
}

/** The record as shown: `status` is the lease-aware one, `alive` says whether the alive key exists. */
export function hostObject(h: StoredHost): Record<string, unknown> {
  return { ...(h.record ?? {}), name: h.name, status: h.status, alive: h.aliveKey };
}

export async function listAction(ctx: CliContext, flags: HostListFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const columns = flags.output !== undefined ? parseColumns(flags.output) : null;
  const hosts = await withStore(opts, (store) => store.hosts.list());
  const objects = hosts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(hostObject);
  if (opts.json) return printJson(ctx.io, columns ? objects.map((o) => pickFields(o, columns)) : objects);
  const cols = columns ?? DEFAULT_HOST_COLUMNS;
  const rows = objects.map((o) => cols.map((c) => formatCell(getField(o, c))));
  ctx.io.stdout.write(formatTable(cols, rows, { header: flags.header }));
}

export async function getAction(ctx: CliContext, name: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const found = await withStore(opts, (store) => store.hosts.get(name));
  if (!found) throw new DroverError('NOT_FOUND', `No host is named ${JSON.stringify(name)}.`);
  printJson(ctx.io, hostObject(found));
}

export interface DrainFlags extends GlobalFlags {
  move?: boolean;
  /** Seconds each live migration may take (with --move). */
  timeout?: number;
}

/**
 * `host drain` / `host undrain`: sets or clears `drained` in the host record,
 * with compare-and-swap; `drain --move` then moves the host's VMs away
 * (drain-move.ts).
 */
export async function setDrainedAction(ctx: CliContext, name: string, drained: boolean, flags: DrainFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const moved = await withStore(opts, async (store) => {
    await setHostDrained(store, name, drained);
    if (!drained || flags.move !== true) return null;
    const { moveVmsOff } = await import('./drain-move.js');
    return moveVmsOff(store, name, (flags.timeout ?? 600) * 1000, (line) => printProgress(ctx.io, line));
  });
  if (moved) {
    const { summarizeMoves } = await import('./drain-move.js');
    const summary = summarizeMoves(name, moved);
    if (opts.json) printJson(ctx.io, { name, drained, ...summary });
    else {
      ctx.io.stdout.write(`Host ${name} is drained; moved ${String(summary.live)} VM(s) live and ${String(summary.cold)} stopped VM(s).\n`);
      for (const o of moved.filter((m) => m.result === 'left')) ctx.io.stdout.write(`  not moved: ${o.label}: ${o.reason ?? ''}\n`);
    }
    if (summary.left !== 0) throw new DroverError('CONFLICT', `${String(summary.left)} VM(s) could not be moved off host ${name}; see above.`);
    return;
  }
  if (opts.json) return printJson(ctx.io, { name, drained });
  ctx.io.stdout.write(drained ? `Host ${name} is drained: the scheduler places no new VMs there.\n` : `Host ${name} is no longer drained.\n`);
}
