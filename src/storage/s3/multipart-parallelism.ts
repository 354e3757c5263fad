/**
 * How many parts of a multipart transfer are in flight: chunter's
 * `parallel_*` / `max_parallel_*` pair, shared by uploads and downloads.
 *
 * The rule: start at `initial`. Completed parts are counted in windows of
 * as many parts as the current limit; at the end of each window the
 * window's throughput (bytes / wall time since the window began) is
 * compared with the previous window's. If it rose by more than 5% and the
 * limit is below `max`, the limit rises by one. It never falls: a slower
 * window only stops the rise (the server or the link is the bottleneck,
 * and fewer streams would not make it faster). The 5% keeps noise from
 * walking the limit up to `max` on a flat link.
 */
export interface ParallelismLimits {
  initial: number;
  max: number;
}

export class ParallelismGovernor {
  private current: number;
  private readonly max: number;
  private windowStart: number;
  private windowBytes = 0;
  private windowParts = 0;
  private lastRate: number | undefined;

  constructor(limits: ParallelismLimits, private readonly now: () => number = () => performance.now()) {
    this.max = Math.max(1, limits.max);
    this.current = Math.min(Math.max(1, limits.initial), this.max);
    this.windowStart = this.now();
  }

  /** Parts that may be in flight now. */
  get limit(): number {
    return this.current;
  }

  /** Records one completed part of `bytes`; may raise the limit. */
  partDone(bytes: number): void {
    this.windowBytes += bytes;
    this.windowParts += 1;
    if (this.windowParts < this.current) return;
    const t = this.now();
    const rate = this.windowBytes / Math.max(t - this.windowStart, 1e-3);
    if (this.lastRate !== undefined && rate > this.lastRate * 1.05 && this.current < this.max) this.current += 1;
    this.lastRate = rate;
    this.windowStart = t;
    this.windowBytes = 0;
    this.windowParts = 0;
  }
}
