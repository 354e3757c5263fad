/**
 * `drover vm snapshot create|list|rollback|delete` (docs/snapshots.md): flags,
 * help and examples. The work is in vm/snapshot-actions.ts, imported only
 * when a command runs.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { addGlobalOptions, type GlobalFlags } from '../global-options.js';
import type { SnapshotFlags } from '../vm/snapshot-actions.js';
import { DEFAULT_SNAPSHOT_WAIT_SECONDS } from '../vm/snapshot-wait.js';

const VM_ARG = 'full uuid, unique uuid prefix (4+ characters) or name';
const NAME_ARG = 'snapshot name: 1 to 64 letters, digits and "-_.:", not all digits';

const actions = () => import('../vm/snapshot-actions.js');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

/** `--wait[=SECONDS]` is the default here (the outcome is what users want); `--no-wait` returns once the request is written. */
function waitOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--wait [seconds]', `wait for the outcome, printing progress to stderr (the default; timeout ${DEFAULT_SNAPSHOT_WAIT_SECONDS} s)`).argParser((value: string) => {
        const n = Number(value);
        if (!/^\d+(\.\d+)?$/.test(value) || n <= 0) throw new InvalidArgumentError('it must be a number of seconds (write --wait=SECONDS)');
        return n;
      }),
    )
    .option('--no-wait', 'return once the request is written into the record');
}

export function registerSnapshotCommands(vm: Command, ctx: CliContext): void {
  const snap = vm
    .command('snapshot')
    .description("create, list, roll back and delete snapshots of a VM's disks (qcow2, every disk at one point in time)")
    .addHelpText('after', examples('drover vm snapshot create web-1 before-upgrade', 'drover vm snapshot list web-1', 'drover vm snapshot rollback web-1 before-upgrade'));

  addGlobalOptions(waitOptions(snap.command('create').description('snapshot every disk of the VM, running or stopped').argument('<vm>', VM_ARG).argument('<name>', NAME_ARG)))
    .addHelpText('after', examples('drover vm snapshot create web-1 before-upgrade', 'drover vm snapshot create 2b0c nightly-2026-11-22 --no-wait'))
    .action(async (ref: string, name: string, flags: SnapshotFlags) => (await actions()).snapshotAction(ctx, 'create', ref, name, flags));

  addGlobalOptions(snap.command('list').description("the VM's snapshots, oldest first, as its agent last reported them").argument('<vm>', VM_ARG).option('-H, --no-header', 'omit the header line'))
    .addHelpText('after', examples('drover vm snapshot list web-1', 'drover vm snapshot list web-1 --json'))
    .action(async (ref: string, flags: GlobalFlags & { header: boolean }) => (await actions()).listSnapshotsAction(ctx, ref, flags));

  addGlobalOptions(
    waitOptions(
      snap
        .command('rollback')
        .description('roll every disk back to the snapshot and delete the newer snapshots (vmadm); a running VM is stopped, rolled back and started again')
        .argument('<vm>', VM_ARG)
        .argument('<name>', NAME_ARG),
    ),
  )
    .addHelpText('after', `${examples('drover vm snapshot rollback web-1 before-upgrade')}\n\nEverything written to the disks after the snapshot is lost, and so are the snapshots taken after it.`)
    .action(async (ref: string, name: string, flags: SnapshotFlags) => (await actions()).snapshotAction(ctx, 'rollback', ref, name, flags));

  addGlobalOptions(waitOptions(snap.command('delete').description('delete the snapshot from every disk').argument('<vm>', VM_ARG).argument('<name>', NAME_ARG)))
    .addHelpText('after', examples('drover vm snapshot delete web-1 before-upgrade'))
    .action(async (ref: string, name: string, flags: SnapshotFlags) => (await actions()).snapshotAction(ctx, 'delete', ref, name, flags));
}
