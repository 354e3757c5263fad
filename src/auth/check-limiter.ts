/**
 * At most a few password checks at once per process: each costs 128 MiB
 * of scrypt on one of libuv's four worker threads, so a flood of logins
 * must not take them all (the API's other file and crypto work shares
 * them). Checks past the queue's length are refused rather than queued.
 */
export class CheckLimiter {
  private running = 0;
  private readonly queue: Array<() => void> = [];

  constructor(
    private readonly concurrency: number,
    private readonly maxQueued: number,
  ) {}

  /** Runs `check`, or resolves with null at once when too many are waiting. */
  async run<T>(check: () => Promise<T>): Promise<T | null> {
    if (this.running >= this.concurrency) {
      if (this.queue.length >= this.maxQueued) return null;
      await new Promise<void>((resolve) => this.queue.push(resolve));
    }
    this.running++;
    try {
      return await check();
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }
}
