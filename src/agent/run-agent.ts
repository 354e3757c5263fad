/**
 * Assembles a real agent from its config: the state dir, the accelerator
 * probe, the qemu hypervisor, the etcd client. `drover agent` and
 * `drover up` both start agents through here.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { etcdTlsOf, type AgentConfig } from '../config/agent-config.js';
import { probeAccel } from '../hypervisor/accel-probe.js';
import { QemuHypervisor } from '../hypervisor/qemu/qemu-hypervisor.js';
import { checkQemuUserReaches, lookupQemuUser } from '../hypervisor/qemu/qemu-user.js';
import { keySpace } from '../contract/keys.js';
import { KvStore } from '../store/kv-store.js';
import { allowedPathsOf } from './allowed-paths.js';
import type { Logger } from '../lib/logger.js';
import { createEtcdClient, PLAIN_ETCD_WARNING } from '../store/etcd-client.js';
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

/**
 * Starts `drover watchdog` for this state dir unless one runs already. It
 * runs in its own session and outlives the agent on purpose: while the
 * agent is gone (frozen, crashed, restarting) it still fences failover VMs
 * once the agent has not fed it for half the lease TTL.
 */
function startWatchdog(stateDir: string, logger: Logger): void {
  let existing = 0;
  try {
    existing = Number(readFileSync(join(stateDir, 'watchdog.pid'), 'utf8').trim());
  } catch {
    // none yet
  }
  if (existing > 0) {
    try {
      if (readFileSync(`/proc/${existing}/cmdline`, 'utf8').includes('watchdog')) return;
    } catch {
      // not running
    }
  }
  const main = process.argv[1];
  if (!main?.endsWith('main.js')) {
    logger.warn('not started from bin/drover; no fencing watchdog runs beside this agent');
    return;
  }
  const log = openSync(join(stateDir, 'watchdog.log'), 'a', 0o600);
  const child = spawn(process.execPath, [main, 'watchdog', '--state-dir', stateDir], { detached: true, stdio: ['ignore', log, log] });
  child.unref();
  closeSync(log);
  logger.info({ pid: child.pid }, 'fencing watchdog started');
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
  startWatchdog(stateDir.root, logger);
  const ceph = { ...(config.ceph_conf !== undefined ? { conf: config.ceph_conf } : {}), ...(config.ceph_user !== undefined ? { user: config.ceph_user } : {}) };
  // Only root can start qemu as another user (and chown its run dir): an agent run by a user runs qemu as itself.
  const asRoot = process.getuid?.() === 0;
  const qemuUser = asRoot ? await lookupQemuUser(config.qemu_user) : null;
  if (!asRoot) logger.warn({ qemu_user: config.qemu_user }, 'the agent does not run as root, so qemu runs as the agent\'s own user; only its seccomp sandbox confines it');
  else if (qemuUser === null) logger.warn('qemu_user is "root": qemu runs as root, only its seccomp sandbox confines it');
  else await checkQemuUserReaches(stateDir.vmsDir, qemuUser);
  const tls = etcdTlsOf(config);
  if (!tls) logger.warn({ etcd: config.etcd }, PLAIN_ETCD_WARNING);
  const client = createEtcdClient(config.etcd, { tls });
  const hypervisor = new QemuHypervisor({
    runRoot: stateDir.vmsDir,
    accel: choice.accel,
    qemuBinary: config.qemu_binary,
    logger,
    ceph,
    qemuUser,
    allowedPaths: allowedPathsOf({ configured: config.allowed_paths, stateRoot: stateDir.root, kv: new KvStore(client), keys: keySpace(config.prefix), logger }),
    vnc: {
      listen: config.vnc_listen,
      ...(config.vnc_password_file !== undefined ? { passwordFile: config.vnc_password_file } : {}),
      ...(config.vnc_tls_dir !== undefined ? { tlsDir: config.vnc_tls_dir } : {}),
    },
  });
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
