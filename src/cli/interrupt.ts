/**
 * Ctrl-C for the commands that keep running until the user stops them
 * (`scan --watch`, `vm events -f`): the first SIGINT or SIGTERM ends the
 * wait so the command closes its etcd connection and exits 0, like
 * watch(1) or tail -f. The listeners go with `dispose`.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface Interrupt {
  /** Aborted on the first SIGINT or SIGTERM. */
  readonly signal: AbortSignal;
  /** Resolves once interrupted. */
  readonly done: Promise<void>;
  /** Waits `ms`; resolves early (with false) when interrupted, true when the time passed. */
  pause(ms: number): Promise<boolean>;
  dispose(): void;
}

export function catchInterrupt(): Interrupt {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const done = new Promise<void>((resolve) => ac.signal.addEventListener('abort', () => resolve(), { once: true }));
  return {
    signal: ac.signal,
    done,
    pause: (ms) => sleep(ms, true, { signal: ac.signal }).catch(() => false),
    dispose: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}
