/** `drover scheduler`: places VMs without a host and handles dead hosts; leader-elected. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { exitAfterStop } from '../exit-after-stop.js';

interface SchedulerFlags {
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  prefix?: string;
  strategy?: string;
  overhead?: string;
  cpuOvercommit?: string;
  electionTtl?: string;
  failoverMargin?: string;
  name?: string;
  logLevel?: string;
  pretty?: boolean;
}

const HELP = `
Any number of schedulers may run; one leads (etcd election) and the others
take over within --election-ttl seconds when it dies. Every agent can also
run one (drover agent --scheduler); drover up always does.

Examples:
  $ drover scheduler --etcd http://10.0.0.1:2379
  $ drover scheduler --strategy pack --cpu-overcommit 2`;

export function registerSchedulerCommand(program: Command, ctx: CliContext): void {
  program
    .command('scheduler')
    .description('place VMs that have no host on live hosts, and handle hosts that die')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (env DROVER_ETCD)')
    .option('--etcd-ca <file>', "CA certificate of etcd's TLS (env DROVER_ETCD_CA)")
    .option('--etcd-cert <file>', 'client certificate for etcd; its CN is the etcd user (env DROVER_ETCD_CERT)')
    .option('--etcd-key <file>', 'key of the client certificate (env DROVER_ETCD_KEY)')
    .option('--prefix <prefix>', 'key prefix in etcd (env DROVER_PREFIX, default /v1)')
    .option('--strategy <strategy>', 'spread (most free memory first) or pack', 'spread')
    .option('--overhead <MiB>', 'memory added to each VM for qemu itself', '64')
    .option('--cpu-overcommit <ratio>', 'vCPUs per host CPU', '4')
    .option('--election-ttl <seconds>', 'leader lease TTL', '5')
    .option('--failover-margin <seconds>', 'wait after a host lease expires before declaring its VMs lost', '5')
    .option('--name <name>', 'this scheduler\'s name in the election (default: hostname)')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .option('--pretty', 'human-readable log lines instead of JSON')
    .addHelpText('after', HELP)
    .action(async (flags: SchedulerFlags) => {
      const { mergeLayers } = await import('../../config/load-config.js');
      const { schedulerConfigSchema } = await import('../../config/agent-config.js');
      const { startScheduler } = await import('../../scheduler/run-scheduler.js');
      const { createEtcdClient, PLAIN_ETCD_WARNING } = await import('../../store/etcd-client.js');
      const { createLogger } = await import('../../lib/logger.js');
      const { resolveGlobalOptions } = await import('../global-options.js');
      const global = resolveGlobalOptions({ etcd: flags.etcd, etcdCa: flags.etcdCa, etcdCert: flags.etcdCert, etcdKey: flags.etcdKey, prefix: flags.prefix }, ctx.env);
      const config = mergeLayers([
        {
          source: 'the command line',
          values: {
            prefix: global.prefix,
            scheduler_strategy: flags.strategy,
            vm_memory_overhead: Number(flags.overhead),
            cpu_overcommit: Number(flags.cpuOvercommit),
            election_ttl: Number(flags.electionTtl),
            failover_margin: Number(flags.failoverMargin),
          },
        },
      ], schedulerConfigSchema);
      const logger = createLogger({ level: flags.logLevel ?? 'info', pretty: flags.pretty === true, name: 'scheduler' });
      if (!global.etcdTls) logger.warn({ etcd: global.endpoints }, PLAIN_ETCD_WARNING);
      const client = createEtcdClient(global.endpoints, { tls: global.etcdTls });
      const scheduler = startScheduler(client, config, logger, flags.name);
      logger.info({ etcd: global.endpoints, prefix: global.prefix }, 'scheduler running; campaigning for leadership');
      await new Promise<void>((resolve) => {
        const stop = (): void => void scheduler.stop().finally(() => { client.close(); resolve(); });
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await exitAfterStop(ctx.io.stdout);
    });
}
