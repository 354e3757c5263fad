/** `drover api`: the authenticated HTTP API (docs/api.md), in the foreground. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { exitAfterStop } from '../exit-after-stop.js';

interface ApiFlags {
  etcd?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  prefix?: string;
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  bootDir?: string[];
  logLevel?: string;
  pretty?: boolean;
}

const HELP = `
Stateless: run as many as you like against one etcd, behind any load
balancer; each reads users, tokens and sessions from etcd on every request.
Every route but POST /api/v1/login, /api/v1/openapi.json and /healthz needs
credentials (drover user add, drover token create). docs/api.md lists the
routes, docs/security.md the roles.

Backups (list, delete) are read from the cluster's backup store (drover
backup store set) with DROVER_S3_ACCESS_KEY_ID / DROVER_S3_SECRET_ACCESS_KEY,
else the AWS SDK's default chain (AWS_* environment, ~/.aws).

Environment: DROVER_ETCD, DROVER_PREFIX, DROVER_API_LISTEN, DROVER_TLS_CERT, DROVER_TLS_KEY,
DROVER_S3_ACCESS_KEY_ID, DROVER_S3_SECRET_ACCESS_KEY.

Examples:
  $ drover api --etcd http://127.0.0.1:2379
  $ drover api --listen 0.0.0.0:7443 --tls-cert api.crt --tls-key api.key`;

export function registerApiCommand(program: Command, ctx: CliContext): void {
  program
    .command('api')
    .description('serve the authenticated HTTP API and the web dashboard for etcd, in the foreground')
    .option('--etcd <urls>', 'etcd endpoints, comma-separated (env DROVER_ETCD)')
    .option('--etcd-ca <file>', "CA certificate of etcd's TLS (env DROVER_ETCD_CA)")
    .option('--etcd-cert <file>', 'client certificate for etcd; its CN is the etcd user (env DROVER_ETCD_CERT)')
    .option('--etcd-key <file>', 'key of the client certificate (env DROVER_ETCD_KEY)')
    .option('--prefix <prefix>', 'key prefix in etcd (env DROVER_PREFIX, default /v1)')
    .option('--listen <host:port>', 'where to listen (env DROVER_API_LISTEN, default 127.0.0.1:7070)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM; env DROVER_TLS_CERT)')
    .option('--tls-key <file>', 'the certificate\'s private key (PEM; env DROVER_TLS_KEY)')
    .option('--boot-dir <dir...>', 'a directory under which users (role user) may name kernel and initrd files; the image store directory always counts')
    .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
    .option('--pretty', 'human-readable log lines instead of JSON')
    .addHelpText('after', HELP)
    .action(async (flags: ApiFlags) => {
      const { startApi, DEFAULT_API_LISTEN } = await import('../../api/run-api.js');
      const { createLogger } = await import('../../lib/logger.js');
      const { resolveGlobalOptions } = await import('../global-options.js');
      const global = resolveGlobalOptions({ etcd: flags.etcd, etcdCa: flags.etcdCa, etcdCert: flags.etcdCert, etcdKey: flags.etcdKey, prefix: flags.prefix }, ctx.env);
      const logger = createLogger({ level: flags.logLevel ?? 'info', pretty: flags.pretty === true, name: 'api' });
      const api = await startApi({
        endpoints: global.endpoints,
        etcdTls: global.etcdTls,
        prefix: global.prefix,
        listen: flags.listen ?? ctx.env.DROVER_API_LISTEN ?? DEFAULT_API_LISTEN,
        tlsCert: flags.tlsCert ?? ctx.env.DROVER_TLS_CERT,
        tlsKey: flags.tlsKey ?? ctx.env.DROVER_TLS_KEY,
        bootDirs: flags.bootDir ?? [],
        logger,
        settings: await s3Settings(ctx.env),
      });
      ctx.io.stdout.write(`drover API on ${api.url} (etcd ${global.endpoints.join(',')}, prefix ${global.prefix}). Ctrl-C to stop.\n`);
      await new Promise<void>((resolve) => {
        const stop = (): void => void api.stop().finally(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await exitAfterStop(ctx.io.stdout);
    });
}

/** The API's own S3 credentials for the backup store, from the environment (never flags: they would show in `ps`). */
export async function s3Settings(env: CliContext['env']): Promise<{ s3Credentials?: import('../../storage/s3/location.js').S3Credentials }> {
  const { s3CredentialsFrom } = await import('../../storage/s3/location.js');
  const s3Credentials = s3CredentialsFrom(env.DROVER_S3_ACCESS_KEY_ID, env.DROVER_S3_SECRET_ACCESS_KEY);
  return s3Credentials !== undefined ? { s3Credentials } : {};
}
