/**
 * Builds the `drover` program from the command groups (commands/index.ts)
 * and runs it. Every command, including ones added later with
 * `addCommand`, gets the same output streams and exit handling.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { COMMAND_GROUPS } from './commands/index.js';
import { PLUGIN_EXIT, PluginExit, pluginService } from './checks/plugin-output.js';
import type { CliContext } from './context.js';
import { EXIT_OK, formatUsageError, reportError } from './report-error.js';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

const ROOT_HELP = `
Environment:
  DROVER_ETCD     etcd endpoints, comma-separated (--etcd wins)
  DROVER_PREFIX   key prefix in etcd (--prefix wins)

Exit codes:
  0  success
  1  error (one sentence on stderr, prefixed "drover: ")
  2  usage error (unknown command or option, missing argument)

Examples:
  $ drover vm create -f web-1.json
  $ drover vm list status=RUNNING
  $ drover vm stop web-1 --wait
  $ drover host list`;

function configureTree(cmd: Command, ctx: CliContext): void {
  const service = pluginService(cmd);
  if (service !== undefined) configurePluginCommand(cmd, service, ctx);
  else {
    cmd.exitOverride();
    cmd.configureOutput({
      writeOut: (s) => ctx.io.stdout.write(s),
      writeErr: (s) => ctx.io.stderr.write(s),
      outputError: (s, write) => write(formatUsageError(s, cmd)),
    });
  }
  for (const sub of cmd.commands) configureTree(sub, ctx);
}

/** A Nagios check's usage error is its plugin line on stdout, `SERVICE UNKNOWN - ...`, and exit 3 (plugin-output.ts). */
function configurePluginCommand(cmd: Command, service: string, ctx: CliContext): void {
  cmd.exitOverride((err) => {
    if (err.exitCode === 0) throw err; // --help
    throw new PluginExit(PLUGIN_EXIT.UNKNOWN);
  });
  cmd.configureOutput({
    writeOut: (s) => ctx.io.stdout.write(s),
    writeErr: (s) => ctx.io.stderr.write(s),
    outputError: (s) => ctx.io.stdout.write(`${service} UNKNOWN - ${formatUsageError(s, cmd).replace(/^drover: /, '')}`),
  });
}

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('drover')
    .description('drover: a VM fleet manager. VMs and hosts live in etcd; an agent on each host runs the VMs with qemu.')
    .version(packageVersion(), '-V, --version', 'print the version')
    // The root's options only before a subcommand, so `drover image import --version V` is the image's version.
    .enablePositionalOptions()
    .helpCommand(true)
    .addHelpText('after', ROOT_HELP);
  for (const register of COMMAND_GROUPS) register(program, ctx);
  configureTree(program, ctx);
  return program;
}

/** Runs one command line; resolves with the exit code. */
export async function runCli(argv: readonly string[], ctx: CliContext): Promise<number> {
  try {
    await buildProgram(ctx).parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (err) {
    return reportError(err, ctx.io);
  }
}
