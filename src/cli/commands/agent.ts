/**
 * `drover agent`: the per-host agent (CONTRACT.md section 6), in the
 * foreground until SIGINT/SIGTERM. SIGHUP re-reads the config and resyncs.
 * Stopping the agent never stops a VM.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { exitAfterStop } from '../exit-after-stop.js';

interface AgentFlags {
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  name?: string;
  stateDir?: string;
  config?: string;
  accel?: string;
  prefix?: string;
  logLevel?: string;
  pretty?: boolean;
  scheduler?: boolean;
  metricsListen?: string;
}

const HELP = `
Every flag has an environment variable (DROVER_ETCD, DROVER_ETCD_CA,
DROVER_ETCD_CERT, DROVER_ETCD_KEY, DROVER_NAME,
DROVER_STATE_DIR, DROVER_CONFIG, DROVER_ACCEL, DROVER_PREFIX,
DROVER_METRICS_LISTEN) and a config file key; a flag wins over the
environment, which wins over the file.

Prometheus metrics are served at http://127.0.0.1:9464/metrics unless
--metrics-listen says otherwise (docs/metrics.md).
The config file is TOML; FILE.d/*.toml are merged after it in alphanumeric
order. See docs/agent.md and drover.toml.example.

DROVER_NOTIFY_EMAIL (recipients) and DROVER_SMTP_URL turn on e-mail.

Examples:
  $ drover agent --etcd http://10.0.0.1:2379 --name hv1 --state-dir /var/lib/drover
  $ drover agent --config /etc/drover/drover.toml --accel tcg
  $ drover agent --config /etc/drover/drover.toml --metrics-listen 0.0.0.0:9464
  $ drover agent --config /etc/drover/drover.toml --metrics-listen off`;

export function registerAgentCommand(program: Command, ctx: CliContext): void {
  program
    .command('agent')
    .description('run the host agent: start, stop and watch the VMs etcd designates to this host')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated')
    .option('--etcd-ca <file>', "CA certificate of etcd's TLS (config etcd_ca)")
    .option('--etcd-cert <file>', "this host's client certificate for etcd, CN host-<name> (config etcd_cert)")
    .option('--etcd-key <file>', 'key of the client certificate (config etcd_key)')
    .option('--name <name>', 'this host\'s name in the cluster')
    .option('--state-dir <dir>', 'where VM runtime files, the hostid and sockets live (absolute path)')
    .option('--config <file>', 'TOML config file')
    .option('--accel <accel>', 'kvm, tcg, or auto (probe KVM, fall back to TCG)')
    .option('--prefix <prefix>', 'key prefix in etcd (default /v1)')
    .option('--log-level <level>', 'trace, debug, info, warn, error')
    .option('--pretty', 'human-readable log lines instead of JSON')
    .option('--scheduler', 'also run a scheduler here (leader-elected with the others)')
    .option('--metrics-listen <host:port>', 'where /metrics listens (default 127.0.0.1:9464; port 0 picks a free one; "off" disables)')
    .addHelpText('after', HELP)
    .action(async (flags: AgentFlags) => {
      // Loaded here, not at the top: `drover vm list` should not pay for the agent.
      const { loadAgentConfig } = await import('../../config/load-config.js');
      const { startAgent } = await import('../../agent/run-agent.js');
      const { createLogger } = await import('../../lib/logger.js');
      const { errorMessage } = await import('../../lib/errors.js');
      const file = flags.config ?? ctx.env.DROVER_CONFIG;
      const cliValues = {
        etcd: flags.etcd,
        etcd_ca: flags.etcdCa,
        etcd_cert: flags.etcdCert,
        etcd_key: flags.etcdKey,
        name: flags.name,
        state_dir: flags.stateDir,
        accel: flags.accel,
        prefix: flags.prefix,
        log_level: flags.logLevel,
        scheduler: flags.scheduler,
        metrics_listen: flags.metricsListen,
      };
      const load = () => loadAgentConfig({ file, env: ctx.env, flags: cliValues });
      const config = await load();
      const logger = createLogger({ level: config.log_level, pretty: flags.pretty === true, name: `agent:${config.name}` });
      const running = await startAgent(config, { logger, reloadConfig: load });
      await new Promise<void>((resolve) => {
        const onHup = (): void => {
          logger.info('SIGHUP: re-reading the config and resyncing');
          void running.agent.resync('SIGHUP').catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'resync failed'));
        };
        const onStop = (signal: string): void => {
          logger.info({ signal }, 'stopping the agent; VMs keep running');
          process.off('SIGHUP', onHup);
          void running.stop().finally(resolve);
        };
        process.on('SIGHUP', onHup);
        process.once('SIGINT', () => onStop('SIGINT'));
        process.once('SIGTERM', () => onStop('SIGTERM'));
      });
      await exitAfterStop(ctx.io.stdout);
    });
}
