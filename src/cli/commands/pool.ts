/**
 * The `drover pool` command group (docs/pools.md): its flags, help and
 * examples. The work is in pool/pool-actions.ts, imported only when a
 * command runs.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addGlobalOptions, type GlobalFlags } from '../global-options.js';
import type { CreateFlags, DeleteFlags, ListFlags } from '../pool/pool-actions.js';

const actions = () => import('../pool/pool-actions.js');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

export function registerPoolCommands(program: Command, ctx: CliContext): void {
  const pool = program
    .command('pool')
    .description('keep a number or a share of the hosts\' capacity of VMs from a template (Vcycle machinetypes)')
    .addHelpText('after', examples('drover pool create -f batch.json', 'drover pool list', 'drover vm list pool=batch'));

  addGlobalOptions(
    pool
      .command('create')
      .description('create a pool from a JSON record (fills fizzle_seconds, backoff_seconds and template spec defaults); the scheduler then creates its VMs')
      .requiredOption('-f, --file <file>', 'the JSON pool record, or - for stdin')
      .option('--replace', 'replace the pool of that name if it exists (its status and VMs stay)'),
  )
    .addHelpText('after', examples('drover pool create -f batch.json', 'drover pool create -f - < batch.json', 'drover pool create -f batch.json --replace'))
    .action(async (flags: CreateFlags) => (await actions()).createAction(ctx, flags));

  addGlobalOptions(
    pool
      .command('list')
      .description('list pools sorted by name: size asked, target the scheduler computed, VMs running and in total, backoff')
      .option('-H, --no-header', 'omit the header line'),
  )
    .addHelpText('after', examples('drover pool list', 'drover pool list --json'))
    .action(async (flags: ListFlags) => (await actions()).listAction(ctx, flags));

  addGlobalOptions(pool.command('get').description('print one pool record as pretty JSON').argument('<name>', 'the pool name'))
    .addHelpText('after', examples('drover pool get batch'))
    .action(async (name: string, flags: GlobalFlags) => (await actions()).getAction(ctx, name, flags));

  addGlobalOptions(
    pool
      .command('delete')
      .description('delete a pool; its VMs are deleted too (REQUESTED_DELETE) unless --keep-vms')
      .argument('<name>', 'the pool name')
      .option('--keep-vms', 'leave the pool\'s VMs running as ordinary VMs (nothing replaces them any more)'),
  )
    .addHelpText('after', examples('drover pool delete batch', 'drover pool delete batch --keep-vms'))
    .action(async (name: string, flags: DeleteFlags) => (await actions()).deleteAction(ctx, name, flags));
}
