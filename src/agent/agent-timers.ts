/**
 * The agent's clocks, started once the agent is up and stopped with it:
 *  - the heartbeat of the host record, every heartbeat_interval;
 *  - the fencing check, every 250 ms (fencing.ts), a tick skipped while
 *    the previous round still runs;
 *  - the periodic resync, every resync_interval;
 *  - the re-read of the VMs' disk snapshots, every snapshot_update_interval.
 * The other intervals are read from the config when the next wait begins
 * (a reloaded value counts from the next round), and that wait begins when
 * the previous round ends: rounds of the same kind never overlap.
 */
import type { AgentConfig } from '../config/agent-config.js';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';

export interface AgentTimersDeps {
  config: () => AgentConfig;
  heartbeat: () => Promise<void>;
  fence: () => Promise<void>;
  resync: (reason: string) => Promise<void>;
  refreshSnapshots: () => void;
  logger: Logger;
}

/** How often the fencing check runs; well under a third of any lease TTL. */
const FENCE_CHECK_MS = 250;

export class AgentTimers {
  private readonly timers = new Map<'heartbeat' | 'fence' | 'resync' | 'snapshots', NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly deps: AgentTimersDeps) {}

  start(): void {
    const { config, logger: log } = this.deps;
    this.repeat('heartbeat', () => config().heartbeat_interval * 1000, () => this.deps.heartbeat());
    this.fenceEvery(FENCE_CHECK_MS);
    this.repeat('resync', () => config().resync_interval * 1000, () =>
      this.deps.resync('periodic check').catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'resync failed; VMs keep running')),
    );
    // Each VM designated here re-reads its disks' snapshots into its record (its worker does it when the VM is at rest).
    this.repeat('snapshots', () => config().snapshot_update_interval * 1000, async () => this.deps.refreshSnapshots());
  }

  stop(): void {
    this.stopped = true;
    // clearTimeout clears intervals too (one id space in Node).
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Under load a round (a file write) can take longer than 250 ms: a tick then passes. */
  private fenceEvery(ms: number): void {
    let running = false;
    const t = setInterval(() => {
      if (running || this.stopped) return;
      running = true;
      void this.deps.fence().finally(() => (running = false));
    }, ms);
    t.unref();
    this.timers.set('fence', t);
  }

  /** Runs `fn` `ms()` after the previous round ended, until stopped. */
  private repeat(kind: 'heartbeat' | 'resync' | 'snapshots', ms: () => number, fn: () => Promise<void>): void {
    const tick = (): void => {
      if (this.stopped) return;
      const t = setTimeout(() => {
        if (this.stopped) return;
        void fn().finally(tick);
      }, ms());
      t.unref();
      this.timers.set(kind, t);
    };
    tick();
  }
}
