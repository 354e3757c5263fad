/** `drover watchdog --state-dir DIR`: the fencing watchdog the agent starts beside itself. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function registerWatchdogCommand(program: Command, ctx: CliContext): void {
  program
    .command('watchdog')
    .description('fence failover VMs when the agent stops feeding its fence file (started by the agent; see ARCHITECTURE.md)')
    .requiredOption('--state-dir <dir>', 'the agent\'s state dir (env DROVER_STATE_DIR)', ctx.env.DROVER_STATE_DIR)
    .action(async (flags: { stateDir: string }) => {
      const { runWatchdog } = await import('../../agent/watchdog.js');
      const { createLogger } = await import('../../lib/logger.js');
      await runWatchdog(flags.stateDir, createLogger({ name: 'watchdog' }));
    });
}
