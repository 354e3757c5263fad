/**
 * `drover pki` and `drover etcd`: the certificates of etcd's users and
 * etcd's own users and roles (docs/security.md). The work is in
 * cli/security/security-actions.ts.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addGlobalOptions } from '../global-options.js';
import type { PkiInitFlags, SetupAuthFlags } from '../security/security-actions.js';

const actions = () => import('../security/security-actions.js');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

const PKI_HELP = `
Writes DIR/ca.crt (and ca.key: keep it offline once every host has its
certificate), and DIR/<who>.crt + DIR/<who>.key for etcd (the server),
admin, scheduler, api and host-<name> per host. A certificate's CN is the
etcd user it logs in as. Keys are 0600 in a 0700 directory. Running it
again keeps everything that exists and adds what is missing.`;

export function registerSecurityCommands(program: Command, ctx: CliContext): void {
  const pki = program
    .command('pki')
    .description("certificates for etcd's TLS and users: a CA, the etcd server, admin, scheduler, api, one per host")
    .addHelpText('after', examples('drover pki init --dir /etc/drover/pki --hosts hv1,hv2 --server-names etcd1.example.net,10.0.0.5', 'drover pki add-host hv3 --dir /etc/drover/pki'));

  pki
    .command('init')
    .description('make the CA and every certificate that is missing')
    .requiredOption('--dir <dir>', 'where the files go (made 0700)')
    .option('--hosts <names>', 'hosts to make host-<name> certificates for, comma-separated')
    .option('--server-names <names>', "DNS names and IP addresses of the etcd servers, comma-separated (localhost and loopback are always in)")
    .option('--json', 'print JSON instead of text')
    .addHelpText('after', PKI_HELP + examples('drover pki init --dir ./pki --hosts hv1,hv2'))
    .action(async (flags: PkiInitFlags) => (await actions()).pkiInitAction(ctx, flags));

  pki
    .command('add-host')
    .description("make one more host's certificate (host-<name>), signed by DIR's CA")
    .argument('<name>', "the host's name (the agent's name)")
    .requiredOption('--dir <dir>', 'the PKI dir made by drover pki init')
    .option('--json', 'print JSON instead of text')
    .addHelpText('after', examples('drover pki add-host hv3 --dir /etc/drover/pki'))
    .action(async (name: string, flags: { dir: string; json?: boolean }) => (await actions()).pkiAddHostAction(ctx, name, flags));

  const etcd = program.command('etcd').description("etcd's users and roles for drover's components");
  addGlobalOptions(
    etcd
      .command('setup-auth')
      .description("create a user and a role per component with the smallest key ranges it needs, and turn etcd's authentication on")
      .requiredOption('--pki <dir>', "the PKI dir (drover pki init): its admin certificate is used, and its host-<name> certificates name the hosts")
      .option('--hosts <names>', 'hosts to create users for, comma-separated (default: every host-<name>.crt in the PKI dir)')
      .option('--scheduler-hosts <names>', 'hosts whose agent also runs the scheduler (agent --scheduler), comma-separated'),
  )
    .addHelpText(
      'after',
      `
Safe to run again (after adding hosts, or on a cluster whose auth is on):
what exists is kept, what is missing is added. Run it once per --prefix.
The roles are listed in docs/security.md.` + examples('drover etcd setup-auth --etcd https://10.0.0.5:2379 --pki /etc/drover/pki', 'drover etcd setup-auth --etcd https://127.0.0.1:2379 --pki ./pki --scheduler-hosts hv1'),
    )
    .action(async (flags: SetupAuthFlags) => (await actions()).setupAuthAction(ctx, flags));
}
