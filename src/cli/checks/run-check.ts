/**
 * Runs one Nagios check: whatever goes wrong inside it (etcd unreachable, a
 * bad option value, an unreadable file) becomes UNKNOWN with its one
 * sentence, never a stack or a CLI exit code. Prints the plugin line (or,
 * with --json, one object) and leaves with the plugin's exit code.
 */
import { errorMessage, oneSentence } from '../../lib/errors.js';
import type { CliContext } from '../context.js';
import { printJson } from '../output/print.js';
import { formatPluginLine, PLUGIN_EXIT, PluginExit, type CheckResult } from './plugin-output.js';

export async function runCheck(ctx: CliContext, service: string, json: boolean, check: () => Promise<CheckResult>): Promise<void> {
  let result: CheckResult;
  try {
    result = await check();
  } catch (err) {
    result = { state: 'UNKNOWN', text: oneSentence(errorMessage(err)), perfdata: [] };
  }
  const exitCode = PLUGIN_EXIT[result.state];
  if (json) printJson(ctx.io, { service, state: result.state, exit_code: exitCode, text: result.text, perfdata: result.perfdata });
  else ctx.io.stdout.write(formatPluginLine(service, result));
  if (exitCode !== PLUGIN_EXIT.OK) throw new PluginExit(exitCode);
}
