/**
 * The `drover vm` command group: its flags, help and examples. The work is
 * in vm/vm-actions.ts, imported only when a command runs.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { DEFAULT_VM_COLUMNS } from '../output/columns.js';
import { addApiOptions, addGlobalOptions, type GlobalFlags } from '../global-options.js';
import type { VmAction } from '../../vm-ops/status-plan.js';
import type { ChangeFlags, ListFlags, MigrateFlags } from '../vm/vm-actions.js';
import type { EventsFlags } from '../vm/vm-events.js';
import { waitOption } from '../wait-option.js';
import { registerSnapshotCommands } from './vm-snapshot.js';
import { registerVmBackupCommands } from './backup.js';

const VM_ARG = 'full uuid, unique uuid prefix (4+ characters) or name';

const actions = () => import('../vm/vm-actions.js');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

export function registerVmCommands(program: Command, ctx: CliContext): void {
  const vm = program
    .command('vm')
    .description('create, list, inspect, start, stop, restart and delete VMs')
    .addHelpText('after', examples('drover vm create -f web-1.json', 'drover vm list status=RUNNING', 'drover vm stop web-1 --wait'));

  addApiOptions(addGlobalOptions(
    vm
      .command('create')
      .description('create a VM from a JSON record (fills uuid, spec defaults and status REQUESTED_NEW); prints its uuid')
      .requiredOption('-f, --file <file>', 'the JSON VM record, or - for stdin'),
  ))
    .addHelpText('after', examples('drover vm create -f web-1.json', 'drover vm create -f - < web-1.json', 'drover vm create -f web-1.json --json'))
    .action(async (flags: GlobalFlags & { file: string }) => (await actions()).createAction(ctx, flags));

  addApiOptions(addGlobalOptions(
    vm
      .command('list')
      .description('list VMs as a table sorted by name; each FILTER is field=value, and all must match')
      .argument('[filters...]', 'field=value, e.g. status=RUNNING host=hv1 spec.vcpus=2 (host= matches no host)')
      .option('-o, --output <fields>', `columns, comma-separated: any field or dotted path (default ${DEFAULT_VM_COLUMNS.join(',')})`)
      .option('-H, --no-header', 'omit the header line'),
  ))
    .addHelpText('after', examples('drover vm list', 'drover vm list -H -o uuid status=STOP', 'drover vm list -o name,spec.memory,runtime.pid host=hv1', 'drover vm list --json'))
    .action(async (filters: string[], flags: ListFlags) => (await actions()).listAction(ctx, filters, flags));

  addApiOptions(addGlobalOptions(vm.command('get').description('print one VM record as pretty JSON').argument('<vm>', VM_ARG)))
    .addHelpText('after', examples('drover vm get web-1', 'drover vm get 2b0c'))
    .action(async (ref: string, flags: GlobalFlags) => (await actions()).getAction(ctx, ref, flags));

  registerStatusChanges(vm, ctx);

  addApiOptions(addGlobalOptions(vm.command('console').description("the VM's serial console in this terminal, read and write (on the VM's host, or anywhere with --api); Ctrl-] detaches").argument('<vm>', VM_ARG)))
    .addHelpText('after', examples('drover vm console web-1', 'DROVER_API_URL=https://drover.example:7070 DROVER_TOKEN=drt_... drover vm console web-1'))
    .action(async (ref: string, flags: GlobalFlags) => (await import('../vm/vm-console.js')).consoleAction(ctx, ref, flags));

  addGlobalOptions(
    vm
      .command('migrate')
      .description('move a VM to another host: live (qemu migration over TCP) when RUNNING, cold (only its host changes) when stopped')
      .argument('<vm>', VM_ARG)
      .requiredOption('--to <host>', 'the host to move it to (ALIVE, not drained, with the memory)')
      .addOption(waitOption('the VM runs on the new host, printing progress')),
  )
    .addHelpText(
      'after',
      `${examples('drover vm migrate web-1 --to hv2 --wait', 'drover vm migrate 2b0c --to hv3')}

A live migration needs every disk on storage both hosts share (config shared_storage); if it fails, the VM keeps running where it was. See docs/migration.md.`,
    )
    .action(async (ref: string, flags: MigrateFlags) => (await actions()).migrateAction(ctx, ref, flags));

  registerSnapshotCommands(vm, ctx);
  registerVmBackupCommands(vm, ctx);

  addGlobalOptions(vm.command('log').description("show a VM's record log, then its events from the cluster event log").argument('<vm>', VM_ARG))
    .addHelpText('after', examples('drover vm log web-1', 'drover vm log web-1 --json'))
    .action(async (ref: string, flags: GlobalFlags) => (await actions()).logAction(ctx, ref, flags));

  addApiOptions(addGlobalOptions(
    vm
      .command('events')
      .description('show the cluster event log (P/log/) oldest first; with -f, keep printing new events until Ctrl-C')
      .argument('[vm]', `only this VM's events: ${VM_ARG} (a deleted VM by its full uuid)`)
      .option('-f, --follow', 'after the existing events, print each new one as it is written')
      .addOption(new Option('-l, --level <level>', 'only events of this level or above').choices(['info', 'warn', 'error']))
      .option('-n, --lines <count>', 'only the last COUNT existing events (0: only new ones, with -f)', (v: string) => {
        if (!/^\d+$/.test(v)) throw new InvalidArgumentError('it must be a whole number');
        return Number(v);
      })
      .option('--since <time>', 'only events at or after an ISO time, or this long ago (90s, 10m, 2h, 1d)'),
  ))
    .addHelpText(
      'after',
      `${examples('drover vm events', 'drover vm events -f', 'drover vm events web-1 --level warn', 'drover vm events -f -n 0 --json', 'drover vm events --since 1h')}

Text lines: TIME  HOST  LEVEL  CODE  [VM  ]MESSAGE (the VM column when no VM is given). --json: one event object per line (NDJSON). Event codes: docs/events.md.`,
    )
    .action(async (ref: string | undefined, flags: EventsFlags) => (await import('../vm/vm-events.js')).eventsAction(ctx, ref, flags));
}

const CHANGES: readonly { action: VmAction; description: string; goal: string }[] = [
  { action: 'start', description: 'start a stopped VM (status REQUESTED_START)', goal: 'it is RUNNING' },
  { action: 'stop', description: 'stop a VM (status TO_STOP): ACPI power-down, forced after a timeout; says so if already stopped', goal: 'it is STOP' },
  { action: 'restart', description: 'stop then start a VM (status REQUESTED_RESTART)', goal: 'it is RUNNING again' },
  { action: 'delete', description: 'stop a VM, remove its runtime files and disks, then its record (status REQUESTED_DELETE)', goal: 'its record is gone' },
];

function registerStatusChanges(vm: Command, ctx: CliContext): void {
  for (const { action, description, goal } of CHANGES) {
    const cmd = vm.command(action).description(description).argument('<vm>', VM_ARG).addOption(waitOption(goal));
    if (action === 'stop') cmd.option('-F, --force', 'skip the graceful power-down (sets force_stop: true)');
    addApiOptions(addGlobalOptions(cmd))
      .addHelpText('after', examples(`drover vm ${action} web-1`, `drover vm ${action} 2b0c --wait`, `drover vm ${action} web-1 --wait=30 --json`))
      .action(async (ref: string, flags: ChangeFlags) => (await actions()).changeAction(ctx, action, ref, flags));
  }
}
