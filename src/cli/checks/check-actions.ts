/** What the Nagios check commands do; loaded on demand by commands/checks.ts. */
import { hostname } from 'node:os';
import { DroverError } from '../../lib/errors.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { withStore } from '../store-session.js';
import { resolveVm } from '../../vm-ops/resolve-vm.js';
import { rawObject } from '../../store/vm-repository.js';
import { checkHeartbeat, DEFAULT_STATE_DIR } from './check-heartbeat.js';
import { evaluateHost } from './check-host.js';
import { evaluateVm } from './check-vm.js';
import { runCheck } from './run-check.js';

export interface HeartbeatFlags {
  critical?: number;
  stateDir?: string;
  json?: boolean;
}

export async function checkHeartbeatAction(ctx: CliContext, seconds: number, flags: HeartbeatFlags): Promise<void> {
  const stateDir = flags.stateDir ?? ctx.env.DROVER_STATE_DIR ?? DEFAULT_STATE_DIR;
  await runCheck(ctx, 'HEARTBEAT', flags.json === true, () => checkHeartbeat(stateDir, { warning: seconds, critical: flags.critical ?? 2 * seconds }));
}

export interface HostCheckFlags extends GlobalFlags {
  warning: number;
  critical: number;
}

/** This machine's host name as `drover up` names it, for a check run by nrpe on the host itself. */
function localHostName(ctx: CliContext): string {
  return ctx.env.DROVER_NAME ?? (hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63) || 'localhost');
}

export async function checkHostAction(ctx: CliContext, name: string | undefined, flags: HostCheckFlags): Promise<void> {
  await runCheck(ctx, 'HOST', flags.json === true, async () => {
    if (flags.critical > flags.warning) throw new DroverError('USAGE', `--critical ${flags.critical}% must not be above --warning ${flags.warning}%.`);
    const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
    const host = name ?? localHostName(ctx);
    const [record, summary] = await withStore(opts, (store) => Promise.all([store.hosts.get(host), store.stats.get(host)]));
    return evaluateHost(host, record, summary, flags, new Date());
  });
}

export async function checkVmAction(ctx: CliContext, ref: string, flags: GlobalFlags): Promise<void> {
  await runCheck(ctx, 'VM', flags.json === true, async () => {
    const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
    return withStore(opts, async (store) => {
      const vm = await resolveVm(store.vms, ref).catch((err: unknown) => {
        if (err instanceof DroverError && err.code === 'NOT_FOUND') return null;
        throw err;
      });
      // A VM that is gone is what this check exists to notice.
      if (!vm) return { state: 'CRITICAL' as const, text: `no VM matches ${JSON.stringify(ref)}`, perfdata: [] };
      const host = rawObject(vm.raw)?.host;
      const hostName = typeof host === 'string' && host !== '' ? host : null;
      const [record, summary] = hostName ? await Promise.all([store.hosts.get(hostName), store.stats.get(hostName)]) : [null, null];
      return evaluateVm(vm, record, summary?.stats ?? null, new Date());
    });
  });
}
