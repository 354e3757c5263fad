/**
 * The edge of the `drover` executable (bin/drover runs the compiled file):
 * the only place that reads process.env and process.argv and sets the exit
 * code. Everything else gets them through the CliContext.
 */
import { readCliEnv, type CliContext } from './context.js';
import { runCli } from './program.js';

const ctx: CliContext = Object.freeze({
  env: readCliEnv(process.env),
  io: Object.freeze({ stdout: process.stdout, stderr: process.stderr, stdin: () => process.stdin }),
});

// `drover vm list | head -1` closes the pipe early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await runCli(process.argv.slice(2), ctx);
