/** `drover up`: etcd, the agent and (with --demo) a demo VM on this machine, in the foreground. */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { DroverError } from '../../lib/errors.js';
import { DEFAULT_PREFIX, normalizePrefix } from '../../contract/keys.js';
import type { CliContext } from '../context.js';
import { exitAfterStop } from '../exit-after-stop.js';

interface UpFlags {
  stateDir?: string;
  etcdPort: string;
  name?: string;
  accel?: string;
  prefix?: string;
  demo?: boolean;
  stopVms?: boolean;
  logLevel: string;
  apiListen?: string;
}

const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

const HELP = `
Runs on one machine: an etcd child process (loopback only), the agent, and
with --demo a small VM booted from build/guest (make guest builds it).
Ctrl-C stops drover; VMs keep running unless --stop-vms, and the next
\`drover up\` adopts them. For a real fleet, run an etcd cluster and one
\`drover agent\` per host instead (README.md).

Examples:
  $ drover up --demo
  $ drover up --state-dir /var/lib/drover --accel kvm --stop-vms`;

export function registerUpCommand(program: Command, ctx: CliContext): void {
  program
    .command('up')
    .description('start drover on this machine: an embedded etcd and the agent, in the foreground')
    .option('--state-dir <dir>', 'where etcd data, VM files and logs go (env DROVER_STATE_DIR)', undefined)
    .option('--etcd-port <port>', 'etcd client port on 127.0.0.1 (the peer port is the next one)', '2379')
    .option('--name <name>', 'this host\'s name (default: the machine\'s hostname)')
    .option('--accel <accel>', 'kvm, tcg or auto (env DROVER_ACCEL)')
    .option('--prefix <prefix>', 'key prefix in etcd (env DROVER_PREFIX)')
    .option('--demo', 'create and boot a demo VM named "demo" from build/guest')
    .option('--stop-vms', 'on Ctrl-C, stop this host\'s VMs before exiting')
    .option('--api-listen <host:port>', 'where the API and web dashboard listen, or off (env DROVER_API_LISTEN, default 127.0.0.1:7070)')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .addHelpText('after', HELP)
    .action(async (flags: UpFlags) => {
      // Loaded here, not at the top: other commands should not pay for the agent.
      const { up } = await import('../../embedded/up.js');
      const { createLogger } = await import('../../lib/logger.js');
      const port = Number(flags.etcdPort);
      if (!Number.isInteger(port) || port < 1 || port > 65534) throw new DroverError('USAGE', `--etcd-port must be a port number, not ${JSON.stringify(flags.etcdPort)}.`);
      const accel = flags.accel ?? ctx.env.DROVER_ACCEL ?? 'auto';
      if (accel !== 'kvm' && accel !== 'tcg' && accel !== 'auto') throw new DroverError('USAGE', `--accel must be kvm, tcg or auto, not ${JSON.stringify(accel)}.`);
      const stateDir = resolve(flags.stateDir ?? ctx.env.DROVER_STATE_DIR ?? '.drover');
      const print = (line: string): void => void ctx.io.stdout.write(`${line}\n`);
      const logger = createLogger({ level: flags.logLevel, pretty: true, name: 'drover' });
      const running = await up({
        stateDir,
        etcdPort: port,
        name: flags.name,
        accel,
        prefix: normalizePrefix(flags.prefix ?? ctx.env.DROVER_PREFIX ?? DEFAULT_PREFIX),
        apiListen: flags.apiListen ?? ctx.env.DROVER_API_LISTEN ?? '127.0.0.1:7070',
        bootDirs: [resolve(REPO_ROOT, 'build/guest')],
        demo: flags.demo ? { kernel: resolve(REPO_ROOT, 'build/guest/vmlinuz'), initrd: resolve(REPO_ROOT, 'build/guest/initrd.gz') } : undefined,
        logger,
        print,
      });
      print(`drover is up: etcd at ${running.endpoint}. Ctrl-C to stop.`);
      await new Promise<void>((done) => {
        const stop = (): void => {
          print('stopping drover...');
          void running.stop({ stopVms: flags.stopVms === true }).finally(done);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      print('drover stopped.');
      await exitAfterStop(ctx.io.stdout);
    });
}
