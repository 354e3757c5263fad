/**
 * Creates the etcd3 client with drover's fault handling: calls retry a few
 * times, and the watch stream reconnects within 2 s once etcd is back (the
 * library's default waits up to 30 s).
 *
 * With TLS files (`--etcd-ca/--etcd-cert/--etcd-key`, docs/security.md) the
 * connection is TLS and the client certificate's CN is the etcd user; plain
 * `http://` endpoints are then taken as `https://`.
 */
import { readFileSync } from 'node:fs';
import { Etcd3, isRecoverableError } from 'etcd3';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { DroverError } from '../lib/errors.js';

/** Files of an etcd client's TLS: the CA that signed the server, and this client's certificate and key. */
export interface EtcdTlsFiles {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

export interface EtcdClientOptions {
  callTimeoutMs?: number;
  tls?: EtcdTlsFiles | null;
}

/** The endpoints as URLs: a bare host:port gets http://, or https:// with TLS; http:// becomes https:// with TLS. */
function etcdUrls(endpoints: readonly string[], tls: boolean): string[] {
  return endpoints.map((e) => {
    const url = /^[a-z]+:\/\//.test(e) ? e : `http://${e}`;
    return tls ? url.replace(/^http:\/\//, 'https://') : url;
  });
}

/** The one warning a component logs when it reaches etcd without TLS (the user's choice, e.g. their own etcd): anyone on the path reads and writes the cluster. */
export const PLAIN_ETCD_WARNING = 'etcd is reached over plain HTTP without a client certificate: whoever reaches it can read and change the whole cluster (give --etcd-ca, --etcd-cert and --etcd-key; docs/security.md)';

let ipServernameWarningMuted = false;

/**
 * grpc-js hands an IP endpoint to TLS as the server name, and Node then
 * warns (DEP0123) on every connection, on stderr of every CLI command. The
 * certificate is still checked against the IP (its subjectAltName), so the
 * warning says nothing to a drover user: that one warning is dropped.
 */
function muteIpServernameWarning(): void {
  if (ipServernameWarningMuted) return;
  ipServernameWarningMuted = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

export function createEtcdClient(endpoints: readonly string[], opts: EtcdClientOptions = {}): Etcd3 {
  const tls = opts.tls ?? null;
  if (tls) muteIpServernameWarning();
  const hosts = etcdUrls(endpoints, tls !== null);
  const callTimeoutMs = opts.callTimeoutMs ?? 5000;
  return new Etcd3({
    hosts,
    ...(tls ? { credentials: readTlsFiles(tls) } : {}),
    dialTimeout: 3000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 2, backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }) }),
      // etcd3 wants a backoff instance (duration + next()), not a factory.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }).next(),
    },
  });
}

function readTlsFiles(tls: EtcdTlsFiles): { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer } {
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new DroverError('USAGE', 'An etcd client certificate needs both --etcd-cert and --etcd-key (or neither).');
  }
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new DroverError('USAGE', `Cannot read the etcd ${what} file ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message}.`);
    }
  };
  return {
    rootCertificate: read('CA', tls.ca),
    ...(tls.cert !== undefined && tls.key !== undefined ? { certChain: read('certificate', tls.cert), privateKey: read('key', tls.key) } : {}),
  };
}
