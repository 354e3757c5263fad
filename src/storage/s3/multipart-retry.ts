/**
 * One S3 request of a multipart transfer, tried again while a retry can
 * help: each try gets its own deadline (an AbortSignal: a silent network
 * would otherwise hang the SDK for ever), errors are translated once
 * (translateS3Error), and only retryable ones are tried again, after
 * 200 ms doubling.
 */
import { DroverError } from '../../lib/errors.js';
import { translateS3Error } from './client.js';

export async function retryS3<T>(attempt: (signal: AbortSignal) => Promise<T>, what: string, attempts: number, timeoutMs: number): Promise<T> {
  let last: DroverError | undefined;
  for (let n = 0; n < attempts; n++) {
    if (n > 0) await new Promise((r) => setTimeout(r, 200 * 2 ** (n - 1)));
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      return await attempt(signal);
    } catch (err) {
      last = signal.aborted
        ? new DroverError('TIMEOUT', `S3 ${what} got no answer within ${timeoutMs} ms.`, true, { cause: err })
        : translateS3Error(err, what);
      if (!last.retryable) throw last;
    }
  }
  throw last ?? new DroverError('S3_ERROR', `S3 ${what} was not tried.`);
}
