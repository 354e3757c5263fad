/**
 * The `drover host` command group: its flags, help and examples. The work is
 * in host/host-actions.ts, imported only when a command runs.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { DrainFlags, HostListFlags } from '../host/host-actions.js';
import type { CliContext } from '../context.js';
import { DEFAULT_HOST_COLUMNS } from '../output/columns.js';
import { addGlobalOptions, type GlobalFlags } from '../global-options.js';

const actions = () => import('../host/host-actions.js');

export function registerHostCommands(program: Command, ctx: CliContext): void {
  const host = program
    .command('host')
    .description('list and inspect hypervisor hosts (records written by their agents)')
    .addHelpText('after', '\nExamples:\n  $ drover host list\n  $ drover host get hv1');

  addGlobalOptions(
    host
      .command('list')
      .description('list hosts sorted by name; a host is ALIVE only while its agent holds its etcd lease, DEAD otherwise')
      .option('-o, --output <fields>', `columns, comma-separated (default ${DEFAULT_HOST_COLUMNS.join(',')})`)
      .option('-H, --no-header', 'omit the header line'),
  )
    .addHelpText('after', '\nExamples:\n  $ drover host list\n  $ drover host list -H -o name,status\n  $ drover host list --json')
    .action(async (flags: HostListFlags) => (await actions()).listAction(ctx, flags));

  addGlobalOptions(host.command('get').description('print one host record as pretty JSON, with its lease-aware status').argument('<name>', 'the host name'))
    .addHelpText('after', '\nExamples:\n  $ drover host get hv1')
    .action(async (name: string, flags: GlobalFlags) => (await actions()).getAction(ctx, name, flags));

  addGlobalOptions(
    host
      .command('stats')
      .description("a host's figures from its stats summary: load, memory, storage, VMs; every host when NAME is absent")
      .argument('[name]', 'the host name')
      .option('-H, --no-header', 'omit the header line (table of every host)'),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  $ drover host stats\n  $ drover host stats hv1\n  $ drover host stats hv1 --json\n\nThe agent writes the summary (P/stats/<name>) every vm_stats_interval; an AGE marked * is older than 3 intervals (stale).',
    )
    .action(async (name: string | undefined, flags: GlobalFlags & { header: boolean }) => (await import('../host/host-stats.js')).hostStatsAction(ctx, name, flags));

  addGlobalOptions(
    host
      .command('drain')
      .description('stop placing new VMs on a host; with --move, also move its VMs away (running ones live, stopped ones cold)')
      .argument('<name>', 'the host name')
      .option('--move', 'move every VM off the host, one at a time, to hosts the scheduler would choose')
      .option('--timeout <seconds>', 'with --move: how long each live migration may take (default 600)', (v: string) => {
        const n = Number(v);
        if (!(n > 0)) throw new InvalidArgumentError('it must be a positive number of seconds');
        return n;
      }),
  )
    .addHelpText('after', '\nExamples:\n  $ drover host drain hv1\n  $ drover host drain hv1 --move\n\nA VM that cannot move (no host fits, a disk not on shared storage, a failed migration) stays where it is; the command then exits 1.')
    .action(async (name: string, flags: DrainFlags) => (await actions()).setDrainedAction(ctx, name, true, flags));

  addGlobalOptions(host.command('undrain').description('let the scheduler place VMs on a drained host again').argument('<name>', 'the host name'))
    .addHelpText('after', '\nExamples:\n  $ drover host undrain hv1')
    .action(async (name: string, flags: GlobalFlags) => (await actions()).setDrainedAction(ctx, name, false, flags));
}
