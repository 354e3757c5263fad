/**
 * Exit codes and the one-line error on stderr: 0 success, 1 error, 2 usage
 * error. Commander has already printed its own usage errors (through
 * `formatUsageError`) by the time its exception reaches us. The Nagios
 * checks exit 0 to 3 instead (checks/plugin-output.ts).
 */
import { CommanderError, type Command } from 'commander';
import { DroverError, errorMessage, oneSentence } from '../lib/errors.js';
import { PluginExit } from './checks/plugin-output.js';
import type { CliIo } from './context.js';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;

export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Commander's "error: unknown option '--x'\n(Did you mean --y?)" as one drover sentence. */
export function formatUsageError(text: string, cmd: Command): string {
  const [first = 'usage error', ...rest] = text
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  // Commander sometimes writes two sentences ("... is invalid. It must ..."): join them.
  const main = first
    .replace(/^error: /, '')
    .replace(/\.$/, '')
    .replace(/\.\s+(\S)/g, (_m, c: string) => `; ${c.toLowerCase()}`);
  const hint = rest.find((l) => /did you mean/i.test(l));
  const suggestion = hint ? ` (${hint.replace(/^\(|\)$/g, '').replace(/^Did/, 'did').replace(/\?$/, '')}?)` : '';
  return `drover: ${main}${suggestion}; see \`${commandPath(cmd)} --help\`.\n`;
}

export function reportError(err: unknown, io: CliIo): number {
  if (err instanceof PluginExit) return err.exitCode; // a Nagios check: its line is already on stdout
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
    // `drover help` exits 0; help shown because a subcommand is missing exits 1 in commander: a usage error for us.
    if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    return EXIT_USAGE;
  }
  if (err instanceof DroverError) {
    io.stderr.write(`drover: ${oneSentence(err.message)}\n`);
    return err.code === 'USAGE' ? EXIT_USAGE : EXIT_ERROR;
  }
  io.stderr.write(`drover: unexpected error: ${oneSentence(errorMessage(err))}\n`);
  return EXIT_ERROR;
}
