/**
 * The agent's retry of what it cannot run without (claiming its name,
 * listing and watching VMs): a retryable failure (etcd away) is retried
 * with backoff until it succeeds or the agent stops; a terminal one is
 * rethrown at once.
 */
import { DroverError, errorMessage, isTerminal } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';

export interface RetryOptions {
  /** True once the agent is stopping: the retry gives up. */
  stopped: () => boolean;
  logger: Logger;
}

/** Retries a retryable failure with backoff (500 ms doubling to 10 s); rethrows terminal ones. */
export async function retryUntilDone(what: string, fn: () => Promise<void>, opts: RetryOptions): Promise<void> {
  for (let attempt = 0; !opts.stopped(); attempt++) {
    try {
      await fn();
      return;
    } catch (err) {
      if (isTerminal(err)) throw err;
      const delay = Math.min(10_000, 500 * 2 ** attempt);
      opts.logger.warn({ err: errorMessage(err), retryInMs: delay }, `could not ${what}; retrying`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  throw new DroverError('ETCD_UNAVAILABLE', `Agent stopped before it could ${what}.`, true);
}
