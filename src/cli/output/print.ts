/** Writing results: text lines to stdout, JSON pretty-printed, progress to stderr. */
import type { CliIo } from '../context.js';

export function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLine(io: CliIo, text: string): void {
  io.stdout.write(`${text}\n`);
}

/** Progress of a long operation goes to stderr, so stdout stays parseable. */
export function printProgress(io: CliIo, text: string): void {
  io.stderr.write(`${text}\n`);
}
