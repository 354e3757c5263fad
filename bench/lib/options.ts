/**
 * Command-line options of a bench script: node:util parseArgs plus what every
 * script wants from it: `--help`/`-h` prints the usage and exits 0; an
 * unknown option, a missing value or a stray argument prints one sentence and
 * the usage on stderr and exits 2, instead of a stack trace.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: false }>>['values'];

export function benchOptions<const O extends Options>(usage: string, options: O, args: string[] = process.argv.slice(2)): Values<O> {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    usageError(`${(err as Error).message}\nusage: ${usage}`);
  }
  if (values['help'] === true) {
    process.stdout.write(`usage: ${usage}\n`);
    process.exit(0);
  }
  delete values['help'];
  return values as Values<O>;
}

/** A bad option value: one sentence on stderr, exit 2. */
export function usageError(msg: string): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}
