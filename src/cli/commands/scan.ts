/**
 * `drover scan`: every VM of the fleet with the figures its host measured
 * (Vcycle's scan, seed 001). The work is in scan/scan-action.ts, imported
 * only when the command runs.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { addGlobalOptions } from '../global-options.js';
import { DEFAULT_SCAN_COLUMNS, SCAN_FIELD_ALIASES } from '../output/columns.js';
import type { ScanFlags } from '../scan/scan-action.js';

/** The short column names, a few per line. */
const aliasLines = Object.entries(SCAN_FIELD_ALIASES)
  .map(([k, v]) => `${k}=${v}`)
  .reduce<string[]>((acc, item) => {
    const last = acc.at(-1);
    if (last !== undefined && last.length + item.length < 72) acc[acc.length - 1] = `${last}  ${item}`;
    else acc.push(item);
    return acc;
  }, [])
  .map((l) => `  ${l}`)
  .join('\n');

const HELP = `
Columns (-o, --sort and filters take these names, or the JSON field names):
${aliasLines}
  and uuid name host status vcpus memory pid stats_at stale, and every *_bytes counter.

Figures come from the stats summary of the VM's host (P/stats/<host>, written
every vm_stats_interval); "-" means not measured or not running. A figure
marked "*" comes from a summary older than 3 of its intervals (stale).

Examples:
  $ drover scan
  $ drover scan --sort cpu -r
  $ drover scan host=hv1 status=RUNNING name='web-*'
  $ drover scan -o name,cpu,rss,wall --watch 5
  $ drover scan --json`;

function positiveSeconds(v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) throw new InvalidArgumentError('it must be a positive number of seconds (write --watch=SECONDS)');
  return n;
}

export function registerScanCommand(program: Command, ctx: CliContext): void {
  addGlobalOptions(
    program
      .command('scan')
      .description("every VM in the fleet with its host's figures: CPU load, wall time, uptime, disk and network rates")
      .argument('[filters...]', 'field=value, all must match; * and ? are globs (e.g. host=hv1 name=web-*)')
      .option('-o, --output <columns>', `columns, comma-separated (default ${DEFAULT_SCAN_COLUMNS.join(',')})`)
      .option('-s, --sort <column>', 'sort by this column (default name); VMs without the figure come last')
      .option('-r, --reverse', 'sort in descending order')
      .option('-H, --no-header', 'omit the header line and the stale notes')
      .addOption(new Option('-w, --watch [seconds]', 'redraw every SECONDS (default 2) until Ctrl-C').argParser(positiveSeconds)),
  )
    .addHelpText('after', HELP)
    .action(async (filters: string[], flags: ScanFlags) => (await import('../scan/scan-action.js')).scanAction(ctx, filters, flags));
}
