/**
 * Turns what KvStore reports about etcd into the one sentence a CLI user can
 * act on. KvStore already wraps every etcd3 error as ETCD_UNAVAILABLE with the
 * original as `cause`; here we only decide which sentence fits.
 */
import { isBrokenCircuitError } from 'cockatiel';
import { EtcdPermissionDeniedError, GRPCDeadlineExceededError, GRPCNotImplementedError, isRecoverableError } from 'etcd3';
import { DroverError } from '../lib/errors.js';

function isUnreachable(cause: unknown): boolean {
  if (!(cause instanceof Error)) return false;
  return isRecoverableError(cause) || cause instanceof GRPCDeadlineExceededError || isBrokenCircuitError(cause);
}

/** A TLS handshake etcd refused (no or an unknown client certificate) or that failed on our side (wrong CA, plain HTTP to a TLS port). */
function tlsFailure(cause: unknown): string | null {
  const text = cause instanceof Error ? cause.message : '';
  if (/bad certificate|certificate required|unknown ca|alert/i.test(text)) return 'refused the TLS handshake: give a client certificate signed by its CA (--etcd-cert, --etcd-key)';
  if (/self.signed|unable to verify|certificate/i.test(text)) return "presented a certificate the --etcd-ca file does not vouch for";
  if (/wrong version number|http_request|packet length too long/i.test(text)) return 'does not speak TLS on that port (or speaks only TLS): check the scheme of --etcd';
  return null;
}

export function translateEtcdError(err: unknown, endpoints: readonly string[]): unknown {
  const where = endpoints.join(',');
  if (err instanceof EtcdPermissionDeniedError) return new DroverError('FORBIDDEN', `etcd at ${where} refused this: the etcd user of your certificate has no permission for it.`, false, { cause: err });
  if (err instanceof Error && !(err instanceof DroverError) && isUnreachable(err)) err = new DroverError('ETCD_UNAVAILABLE', err.message, true, { cause: err });
  if (!(err instanceof DroverError) || err.code !== 'ETCD_UNAVAILABLE') return err;
  const tls = tlsFailure(err.cause) ?? (err.cause instanceof Error ? tlsFailure(err.cause.cause) : null);
  if (tls) return new DroverError('ETCD_UNAVAILABLE', `etcd at ${where} ${tls}.`, false, { cause: err });
  if (isUnreachable(err.cause)) {
    return new DroverError('ETCD_UNAVAILABLE', `etcd at ${where} is not reachable; start it with \`drover up\` or pass --etcd.`, true, { cause: err });
  }
  if (err.cause instanceof GRPCNotImplementedError) {
    return new DroverError('ETCD_UNAVAILABLE', `${where} does not answer as an etcd v3 server; check --etcd.`, false, { cause: err });
  }
  return err;
}
