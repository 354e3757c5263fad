/**
 * `drover user` and `drover token`: accounts for the HTTP API, written
 * straight to etcd (an operator's commands: whoever runs them holds etcd
 * access). The work is in auth/auth-actions.ts.
 */
import { Option, type Command } from 'commander';
import { ROLES } from '../../contract/roles.js';
import type { CliContext } from '../context.js';
import { addGlobalOptions, type GlobalFlags } from '../global-options.js';
import type { TokenCreateFlags, UserAddFlags } from '../auth/auth-actions.js';

const actions = () => import('../auth/auth-actions.js');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

const ROLE_HELP = `
Roles (docs/security.md):
  admin     everything, including users, hosts and admin-only VM fields (owner, host, path disks, kernel paths)
  operator  every VM privilege on every VM, and reading hosts
  user      the VM privileges on its own VMs only (owner = its name); others' VMs do not exist for it
  auditor   reads everything, changes nothing`;

export function registerAuthCommands(program: Command, ctx: CliContext): void {
  const user = program
    .command('user')
    .description('API users: add, list, delete, set a password (straight to etcd)')
    .addHelpText('after', examples('drover user add alice --role user --password-stdin', 'drover user list', 'drover user delete alice') + ROLE_HELP);

  addGlobalOptions(
    user
      .command('add')
      .description('add a user; without a password it logs in only with tokens (drover token create)')
      .argument('<name>', 'user name: a lower-case letter, then up to 62 of a-z 0-9 _ . - (what VM records hold in owner)')
      .addOption(new Option('--role <role>', 'its role').choices(ROLES).makeOptionMandatory())
      .option('--password-stdin', 'read the password (8 characters or more) from the first line of stdin'),
  )
    .addHelpText('after', examples('drover user add alice --role user', "printf '%s\\n' \"$PW\" | drover user add bob --role operator --password-stdin") + ROLE_HELP)
    .action(async (name: string, flags: UserAddFlags) => (await actions()).userAddAction(ctx, name, flags));

  addGlobalOptions(user.command('list').description('list users: name, role, whether it has a password').option('-H, --no-header', 'omit the header line'))
    .addHelpText('after', examples('drover user list', 'drover user list --json'))
    .action(async (flags: GlobalFlags & { header: boolean }) => (await actions()).userListAction(ctx, flags));

  addGlobalOptions(user.command('delete').description('delete a user with its tokens and web sessions (effective on the next request)').argument('<name>', 'user name'))
    .addHelpText('after', examples('drover user delete alice'))
    .action(async (name: string, flags: GlobalFlags) => (await actions()).userDeleteAction(ctx, name, flags));

  addGlobalOptions(
    user.command('passwd').description("set a user's password, read from the first line of stdin").argument('<name>', 'user name'),
  )
    .addHelpText('after', examples("printf '%s\\n' \"$PW\" | drover user passwd alice"))
    .action(async (name: string, flags: GlobalFlags) => (await actions()).userPasswdAction(ctx, name, flags));

  const token = program
    .command('token')
    .description('API tokens: create (shown once), list, revoke (straight to etcd)')
    .addHelpText('after', examples('drover token create --user alice --expires 30d --json', 'drover token list', 'drover token revoke 3f2a9c0d1e4b5a6c'));

  addGlobalOptions(
    token
      .command('create')
      .description('create an API token for a user and print it once (only its hash is kept); use it as Authorization: Bearer <token>')
      .requiredOption('--user <name>', 'whose token it is')
      .addOption(new Option('--role <role>', "its role, no higher than the user's (default: the user's)").choices(ROLES))
      .option('--expires <duration>', 'expire after this long: 90s, 10m, 12h, 30d (default: never)')
      .option('--description <text>', 'what the token is for (shown by token list)'),
  )
    .addHelpText('after', examples('drover token create --user alice', 'drover token create --user ci --role auditor --expires 30d --json'))
    .action(async (flags: TokenCreateFlags) => (await actions()).tokenCreateAction(ctx, flags));

  addGlobalOptions(
    token.command('list').description('list tokens (never their secrets)').option('--user <name>', "only this user's tokens").option('-H, --no-header', 'omit the header line'),
  )
    .addHelpText('after', examples('drover token list', 'drover token list --user alice --json'))
    .action(async (flags: GlobalFlags & { user?: string; header: boolean }) => (await actions()).tokenListAction(ctx, flags));

  addGlobalOptions(token.command('revoke').description('revoke a token and the web sessions opened with it (effective on the next request)').argument('<id>', 'the token id (token list)'))
    .addHelpText('after', examples('drover token revoke 3f2a9c0d1e4b5a6c'))
    .action(async (id: string, flags: GlobalFlags) => (await actions()).tokenRevokeAction(ctx, id, flags));
}
