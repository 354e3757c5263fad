/**
 * Every command group of `drover`, in the order `drover --help` lists them.
 * A group is a module exporting `register<Group>Command(s)(program, ctx)`
 * that adds its commands with `program.command(...)`. To add one, write
 * src/cli/commands/<group>.ts and append its register function here.
 *
 * Keep the modules imported here light (commander, types): load the heavy
 * parts (etcd3, zod, the agent) with `await import()` inside the action, so
 * `drover --help` and usage errors stay fast.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { registerAgentCommand } from './agent.js';
import { registerApiCommand } from './api.js';
import { registerAuthCommands } from './auth.js';
import { registerBackupCommands } from './backup.js';
import { registerCheckCommands } from './checks.js';
import { registerHostCommands } from './host.js';
import { registerImageCommands } from './image.js';
import { registerPoolCommands } from './pool.js';
import { registerScanCommand } from './scan.js';
import { registerSchedulerCommand } from './scheduler.js';
import { registerSecurityCommands } from './security.js';
import { registerUpCommand } from './up.js';
import { registerWatchdogCommand } from './watchdog.js';
import { registerVmCommands } from './vm.js';

export type RegisterCommands = (program: Command, ctx: CliContext) => void;

export const COMMAND_GROUPS: readonly RegisterCommands[] = [
  registerVmCommands,
  registerScanCommand,
  registerHostCommands,
  registerPoolCommands,
  registerImageCommands,
  registerBackupCommands,
  registerCheckCommands,
  registerAuthCommands,
  registerSecurityCommands,
  registerAgentCommand,
  registerSchedulerCommand,
  registerApiCommand,
  registerUpCommand,
  registerWatchdogCommand,
];
