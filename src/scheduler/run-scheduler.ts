/** Builds a Scheduler from config values; used by `drover scheduler`, `drover agent --scheduler` and `drover up`. */
import { hostname } from 'node:os';
import type { Etcd3 } from 'etcd3';
import { keySpace } from '../contract/keys.js';
import type { Logger } from '../lib/logger.js';
import { Scheduler } from './scheduler.js';
import type { Strategy } from './place-vm.js';

export interface SchedulerConfig {
  prefix: string;
  scheduler_strategy: Strategy;
  vm_memory_overhead: number;
  cpu_overcommit: number;
  election_ttl: number;
  failover_margin: number;
}

export function startScheduler(client: Etcd3, config: SchedulerConfig, logger: Logger, name = hostname()): Scheduler {
  const scheduler = new Scheduler({
    client,
    keys: keySpace(config.prefix),
    policy: { strategy: config.scheduler_strategy, overheadMiB: config.vm_memory_overhead, cpuOvercommit: config.cpu_overcommit },
    electionTtl: config.election_ttl,
    failoverMargin: config.failover_margin,
    identity: `${name}:${process.pid}`,
    logger,
  });
  scheduler.start();
  return scheduler;
}
