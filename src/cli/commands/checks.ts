/**
 * The Nagios plugins: `drover check-heartbeat`, `check-host`, `check-vm`.
 * Each prints one plugin line and exits 0 OK, 1 WARNING, 2 CRITICAL or
 * 3 UNKNOWN; unlike every other command, a usage error or an unreachable
 * etcd is UNKNOWN (3), because Nagios would read a 2 as CRITICAL
 * (checks/plugin-output.ts). The work is in checks/check-actions.ts.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { markPluginCommand } from '../checks/plugin-output.js';
import type { HeartbeatFlags, HostCheckFlags } from '../checks/check-actions.js';
import type { CliContext } from '../context.js';
import { addGlobalOptions, type GlobalFlags } from '../global-options.js';

const actions = () => import('../checks/check-actions.js');

const PLUGIN_HELP = `
Output: one line, SERVICE STATE - text | 'label'=value[UOM];warn;crit;min;max
Exit codes (Nagios plugin rules, not the CLI's usual ones):
  0 OK   1 WARNING   2 CRITICAL   3 UNKNOWN (also: bad usage, etcd unreachable, unreadable files)`;

function seconds(v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) throw new InvalidArgumentError('it must be a positive number of seconds');
  return n;
}

function percent(v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || n > 100) throw new InvalidArgumentError('it must be a percentage from 0 to 100');
  return n;
}

export function registerCheckCommands(program: Command, ctx: CliContext): void {
  markPluginCommand(
    program
      .command('check-heartbeat')
      .description("Nagios plugin: is the agent's heartbeat file (<state dir>/heartbeat) younger than SECONDS?")
      .argument('<seconds>', 'OK up to this age; WARNING above it', seconds)
      .option('-c, --critical <seconds>', 'CRITICAL above this age (default 2 x SECONDS)', seconds)
      .option('--state-dir <dir>', "the agent's state dir (env DROVER_STATE_DIR, default /var/lib/drover)")
      .option('--json', 'print the result as a JSON object instead of the plugin line'),
    'HEARTBEAT',
  )
    .addHelpText(
      'after',
      `${PLUGIN_HELP}
A missing heartbeat file (no agent has run with that state dir) is CRITICAL; a
missing or unreadable state dir is UNKNOWN (the check is misconfigured).

Examples:
  $ drover check-heartbeat 600
  $ drover check-heartbeat 60 --critical 300 --state-dir /srv/drover
  nrpe.cfg: command[check-drover]=/opt/drover/bin/drover check-heartbeat 600`,
    )
    .action(async (secs: number, flags: HeartbeatFlags) => (await actions()).checkHeartbeatAction(ctx, secs, flags));

  markPluginCommand(
    addGlobalOptions(
      program
        .command('check-host')
        .description('Nagios plugin: is a host ALIVE, its stats summary fresh, its storage ok and free enough?')
        .argument('[name]', "the host (default: env DROVER_NAME, else this machine's hostname)")
        .option('-w, --warning <percent>', 'WARNING when the state dir filesystem has less free', percent, 10)
        .option('-c, --critical <percent>', 'CRITICAL when it has less free', percent, 5),
    ),
    'HOST',
  )
    .addHelpText(
      'after',
      `${PLUGIN_HELP}
CRITICAL: no host record, DEAD, storage failed or below --critical. WARNING: no
or a stale stats summary, storage below --warning.

Examples:
  $ drover check-host hv1
  $ drover check-host -w 20 -c 10 --etcd 10.0.0.1:2379`,
    )
    .action(async (name: string | undefined, flags: HostCheckFlags) => (await actions()).checkHostAction(ctx, name, flags));

  markPluginCommand(
    addGlobalOptions(
      program
        .command('check-vm')
        .description("Nagios plugin: is a VM RUNNING on a live host? Perfdata: its CPU load, RSS and uptime")
        .argument('<vm>', 'full uuid, unique uuid prefix (4+ characters) or name'),
    ),
    'VM',
  )
    .addHelpText(
      'after',
      `${PLUGIN_HELP}
OK: RUNNING (or migrating) on an ALIVE host. WARNING: STOP, or on its way
somewhere (REQUESTED_*, SCHEDULED, STARTING, TO_STOP, STOPPING).
CRITICAL: KILLED, ERROR, no such VM, or RUNNING on a DEAD host.

Examples:
  $ drover check-vm web-1
  $ drover check-vm 2b0c --json`,
    )
    .action(async (ref: string, flags: GlobalFlags) => (await actions()).checkVmAction(ctx, ref, flags));
}
