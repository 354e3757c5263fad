/**
 * Turns what KvStore reports about etcd into the one sentence a CLI user can
 * act on. KvStore already wraps every etcd3 error as ETCD_UNAVAILABLE with the
 * original as `cause`; here we only decide which sentence fits.
 */
import { isBrokenCircuitError } from 'cockatiel';
import { GRPCDeadlineExceededError, GRPCNotImplementedError, isRecoverableError } from 'etcd3';
import { DroverError } from '../lib/errors.js';

function isUnreachable(cause: unknown): boolean {
  if (!(cause instanceof Error)) return false;
  return isRecoverableError(cause) || cause instanceof GRPCDeadlineExceededError || isBrokenCircuitError(cause);
}

export function translateEtcdError(err: unknown, endpoints: readonly string[]): unknown {
  if (!(err instanceof DroverError) || err.code !== 'ETCD_UNAVAILABLE') return err;
  const where = endpoints.join(',');
  if (isUnreachable(err.cause)) {
    return new DroverError('ETCD_UNAVAILABLE', `etcd at ${where} is not reachable; start it with \`drover up\` or pass --etcd.`, true, { cause: err });
  }
  if (err.cause instanceof GRPCNotImplementedError) {
    return new DroverError('ETCD_UNAVAILABLE', `${where} does not answer as an etcd v3 server; check --etcd.`, false, { cause: err });
  }
  return err;
}
