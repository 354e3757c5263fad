/**
 * `drover scan`: reads the VM records and the hosts' stats summaries, once
 * or every `--watch` seconds over one etcd connection. On a terminal a watch
 * redraws in place (cursor home, clear screen); elsewhere it writes one
 * table (or one JSON array per line) after another. Ctrl-C ends it, exit 0.
 */
import { errorMessage, oneSentence } from '../../lib/errors.js';
import type { CliContext } from '../context.js';
import { translateEtcdError } from '../etcd-errors.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { catchInterrupt } from '../interrupt.js';
import { DEFAULT_SCAN_COLUMNS } from '../output/columns.js';
import { parseColumns, parseFilters } from '../output/fields.js';
import { printJson } from '../output/print.js';
import { formatTable } from '../output/table.js';
import { withStore, type StoreSession } from '../store-session.js';
import { buildScanRows, scanJson, scanTable, selectScanRows, type ScanRow, type ScanSelection } from './scan-rows.js';

export const DEFAULT_WATCH_SECONDS = 2;

export interface ScanFlags extends GlobalFlags {
  output?: string;
  header: boolean;
  sort?: string;
  reverse?: boolean;
  /** `--watch` alone is true. */
  watch?: number | true;
}

const CLEAR_HOME = '\x1b[H\x1b[2J';

interface Scan {
  rows: ScanRow[];
  /** Why a shown host's summary could not be used (it does not match the schema). */
  unreadable: string[];
}

async function readScan(store: StoreSession, sel: ScanSelection): Promise<Scan> {
  const [{ vms }, summaries] = await Promise.all([store.vms.list(), store.stats.list()]);
  const rows = selectScanRows(buildScanRows(vms, summaries, new Date()), sel);
  const hosts = new Set(rows.map((r) => r.host));
  return { rows, unreadable: summaries.flatMap((s) => (s.error !== null && hosts.has(s.name) ? [s.error] : [])) };
}

function renderText(scan: Scan, columns: readonly string[], header: boolean): string {
  const t = scanTable(scan.rows, columns);
  const table = formatTable(t.columns, t.rows, { header, rightAlign: t.rightAlign });
  const notes = [...t.notes, ...scan.unreadable.map((e) => `! ${e}`)];
  // Notes only with the header: `-H` output is for scripts, one line per VM.
  return header && notes.length > 0 ? `${table}${notes.join('\n')}\n` : table;
}

export async function scanAction(ctx: CliContext, filterWords: readonly string[], flags: ScanFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const columns = flags.output !== undefined ? parseColumns(flags.output) : null;
  const sel: ScanSelection = { filters: parseFilters(filterWords), sort: flags.sort ?? 'name', reverse: flags.reverse === true };
  const watch = flags.watch === undefined ? null : flags.watch === true ? DEFAULT_WATCH_SECONDS : flags.watch;
  // Column and sort names are checked before etcd is asked anything.
  scanJson([], columns);
  selectScanRows([], sel);

  const render = (scan: Scan): string =>
    opts.json ? `${JSON.stringify(scanJson(scan.rows, columns))}\n` : renderText(scan, columns ?? DEFAULT_SCAN_COLUMNS, flags.header);

  if (watch === null) {
    const scan = await withStore(opts, (store) => readScan(store, sel));
    if (opts.json) return printJson(ctx.io, scanJson(scan.rows, columns));
    ctx.io.stdout.write(render(scan));
    return;
  }

  const tty = (ctx.io.stdout as { isTTY?: boolean }).isTTY === true;
  const interrupt = catchInterrupt();
  try {
    await withStore(opts, async (store) => {
      let first = true;
      do {
        let text: string;
        try {
          text = render(await readScan(store, sel));
        } catch (err) {
          if (first) throw err; // nothing to show yet: fail as a one-shot scan would
          ctx.io.stderr.write(`drover: ${oneSentence(errorMessage(translateEtcdError(err, opts.endpoints)))} (retrying)\n`);
          continue;
        } finally {
          first = false;
        }
        const title = opts.json ? '' : `Every ${watch}s: drover scan    ${new Date().toISOString()}\n\n`;
        ctx.io.stdout.write(tty ? `${CLEAR_HOME}${title}${text}` : `${title}${text}${opts.json ? '' : '\n'}`);
      } while (await interrupt.pause(watch * 1000));
    });
  } finally {
    interrupt.dispose();
  }
}
