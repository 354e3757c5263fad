/**
 * Assembles a real agent from its config: the state dir, the accelerator
 * probe, the qemu hypervisor, the etcd client. `drover agent` and
 * `drover up` both start agents through here.
 */
import { readFileSync } from 'node:fs';
import type { AgentConfig } from '../config/agent-config.js';
import { probeAccel } from '../hypervisor/accel-probe.js';
import { QemuHypervisor } from '../hypervisor/qemu/qemu-hypervisor.js';
import type { Logger } from '../lib/logger.js';
import { createEtcdClient } from '../store/etcd-client.js';
import { Agent } from './agent.js';
import { openStateDir } from './state-dir.js';
import { startScheduler } from '../scheduler/run-scheduler.js';

export function droverVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export interface RunningAgent {
  agent: Agent;
  /** Stops the agent; VMs keep running. */
  stop(): Promise<void>;
}

export async function startAgent(
  config: AgentConfig,
  opts: { logger: Logger; reloadConfig?: () => Promise<AgentConfig> },
): Promise<RunningAgent> {
  const { logger } = opts;
  const stateDir = await openStateDir(config.state_dir);
  const choice = await probeAccel(config.accel, { qemuBinary: config.qemu_binary, workDir: stateDir.root });
  logger.info({ accel: choice.accel }, choice.reason);
  const hypervisor = new QemuHypervisor({ runRoot: stateDir.vmsDir, accel: choice.accel, qemuBinary: config.qemu_binary, logger });
  const client = createEtcdClient(config.etcd);
  const agent = new Agent({ config, reloadConfig: opts.reloadConfig, client, hypervisor, stateDir, logger, version: droverVersion() });
  try {
    await agent.start();
  } catch (err) {
    await agent.stop().catch(() => undefined);
    client.close();
    throw err;
  }
  const scheduler = config.scheduler ? startScheduler(client, config, logger, config.name) : null;
  logger.info({ name: config.name, stateDir: stateDir.root, etcd: config.etcd, scheduler: config.scheduler }, 'agent running');
  return {
    agent,
    stop: async () => {
      await scheduler?.stop();
      await agent.stop();
      client.close();
    },
  };
}
