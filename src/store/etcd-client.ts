/**
 * Creates the etcd3 client with drover's fault handling: calls retry a few
 * times, and the watch stream reconnects within 2 s once etcd is back (the
 * library's default waits up to 30 s).
 */
import { Etcd3, isRecoverableError } from 'etcd3';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';

export function createEtcdClient(endpoints: readonly string[], opts: { callTimeoutMs?: number } = {}): Etcd3 {
  const hosts = endpoints.map((e) => (/^[a-z]+:\/\//.test(e) ? e : `http://${e}`));
  const callTimeoutMs = opts.callTimeoutMs ?? 5000;
  return new Etcd3({
    hosts,
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
