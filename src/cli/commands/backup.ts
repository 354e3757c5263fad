/**
 * `drover backup list|delete` and `drover vm backup|restore`
 * (docs/backups.md): flags, help and examples. The work is in
 * backup/backup-actions.ts, imported only when a command runs.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addGlobalOptions, type GlobalFlags } from '../global-options.js';
import type { BackupFlags, CleanFlags, ListFlags, RestoreFlags } from '../backup/backup-actions.js';

const VM_ARG = 'full uuid, unique uuid prefix (4+ characters) or name';
const actions = () => import('../backup/backup-actions.js');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

function s3Options(cmd: Command): Command {
  return addGlobalOptions(cmd)
    .option('--s3-bucket <bucket>', 'the backups bucket (env DROVER_S3_BUCKET; default: the cluster\'s backup store)')
    .option('--s3-endpoint <url>', 'an S3-compatible server instead of AWS (env DROVER_S3_ENDPOINT)')
    .option('--s3-region <region>', 'the region (env DROVER_S3_REGION, default us-east-1)')
    .option('--s3-path-style', 'bucket in the URL path, as most S3-compatible servers want (env DROVER_S3_PATH_STYLE=1)');
}

/** `drover vm backup` and `drover vm restore`, added to the `vm` group. */
export function registerVmBackupCommands(vm: Command, ctx: CliContext): void {
  s3Options(vm.command('backup').description("copy every disk of a VM to S3 (a running VM's qcow2 disks at one snapshot, image disks flattened; multipart, each part checked); prints the backup's id").argument('<vm>', VM_ARG))
    .option('--name <name>', 'a name for the backup (default: its id)')
    .option('--state-dir <dir>', "the agent's state dir, where image disks' overlays are (env DROVER_STATE_DIR); needed for a VM with image disks")
    .addHelpText(
      'after',
      examples('drover vm backup web-1 --name nightly --s3-bucket backups', 'DROVER_S3_BUCKET=backups drover vm backup web-1', 'drover vm backup web-1 --state-dir /var/lib/drover --s3-bucket backups   # image disks (flattened)'),
    )
    .action(async (ref: string, flags: BackupFlags) => (await actions()).vmBackupAction(ctx, ref, flags));
  s3Options(
    vm
      .command('restore')
      .description('restore a backup over the stopped VM\'s disks, or --as a new VM (disks in --dir/NEW-NAME/, then it boots)')
      .argument('<vm>', VM_ARG)
      .argument('<backup>', 'the backup id or its unique name'),
  )
    .option('--as <new-name>', 'create a new VM from the backup instead of overwriting this one')
    .option('--dir <dir>', 'with --as: where the new VM\'s path disks go (on its host)')
    .option('--state-dir <dir>', "the agent's state dir: image disks are restored at their overlay paths there (env DROVER_STATE_DIR)")
    .addHelpText(
      'after',
      examples(
        'drover vm restore web-1 nightly --s3-bucket backups',
        'drover vm restore web-1 20261123T060501Z-1a2b3c --as web-2 --dir /srv/vms',
        'drover vm restore web-1 nightly --as web-3 --state-dir /var/lib/drover   # image disks',
      ),
    )
    .action(async (ref: string, backup: string, flags: RestoreFlags) => (await actions()).vmRestoreAction(ctx, ref, backup, flags));
}

export function registerBackupCommands(program: Command, ctx: CliContext): void {
  const backup = program.command('backup').description('list and delete VM backups in S3 (made with drover vm backup or through the API), and set where they go');
  s3Options(backup.command('list').description('complete backups, oldest first, of one VM or all').argument('[vm]', VM_ARG))
    .addHelpText('after', examples('drover backup list', 'drover backup list web-1 --json'))
    .action(async (ref: string | undefined, flags: ListFlags) => (await actions()).listAction(ctx, ref, flags));
  s3Options(backup.command('delete').description('delete a backup (its manifest first, so it disappears at once)').argument('<backup>', 'the backup id or its unique name'))
    .addHelpText('after', examples('drover backup delete 20261123T060501Z-1a2b3c'))
    .action(async (id: string, flags: ListFlags) => (await actions()).deleteAction(ctx, id, flags));
  s3Options(backup.command('clean').description('remove what interrupted backups left (folders without a manifest)').argument('[vm]', VM_ARG))
    .option('--older-than <seconds>', 'only folders with nothing newer (a backup may still be uploading)', '3600')
    .addHelpText('after', examples('drover backup clean', 'drover backup clean web-1 --older-than 86400'))
    .action(async (ref: string | undefined, flags: CleanFlags) => (await actions()).cleanAction(ctx, ref, flags));
  const store = backup.command('store').description('where the fleet\'s backups go: P/config/backup_store (credentials stay with each host and API)');
  addGlobalOptions(store.command('get').description('print the backup store setting'))
    .addHelpText('after', examples('drover backup store get', 'drover backup store get --json'))
    .action(async (flags: GlobalFlags) => (await actions()).storeGetAction(ctx, flags));
  s3Options(store.command('set').description('set the bucket that backups asked through the API go to (and that the CLI uses without --s3-bucket)'))
    .addHelpText('after', examples('drover backup store set --s3-bucket backups', 'drover backup store set --s3-bucket backups --s3-endpoint http://10.0.0.5:9000 --s3-path-style'))
    .action(async (flags: ListFlags) => (await actions()).storeSetAction(ctx, flags));
}
