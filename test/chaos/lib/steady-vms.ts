/**
 * VMs that a scenario starts once and never touches again: whatever faults
 * come, each must end RUNNING in the very qemu process it started in (same
 * pid, the only qemu /proc ever showed for it) with no event but its one
 * vm.started.
 */
import { pidAlive, type Cluster } from '../../helpers/agent-harness.js';
import type { EventTap } from './event-tap.js';
import type { QemuWatch } from './qemu-watch.js';

export interface SteadyVm {
  uuid: string;
  pid: number;
}

const pidOf = (vm: Record<string, unknown> | null): number => (vm?.runtime as { pid: number } | undefined)?.pid ?? 0;

/** One idle test-guest VM per host, each waited for until RUNNING. */
export async function startSteadyVms(cluster: Cluster, hosts: readonly string[]): Promise<SteadyVm[]> {
  const uuids = await Promise.all(hosts.map((h, i) => cluster.createVm({ name: `steady-${i}` }, h)));
  return Promise.all(uuids.map(async (uuid) => ({ uuid, pid: pidOf(await cluster.waitForStatus(uuid, 'RUNNING', 120_000)) })));
}

/** What went wrong with the steady VMs (empty: nothing). */
export async function checkSteadyVms(cluster: Cluster, steady: readonly SteadyVm[], tap: EventTap, watch: QemuWatch): Promise<string[]> {
  const problems: string[] = [];
  for (const s of steady) {
    const vm = await cluster.getVm(s.uuid);
    if (vm?.status !== 'RUNNING' || pidOf(vm) !== s.pid || !pidAlive(s.pid)) problems.push(`steady VM ${s.uuid}: ${String(vm?.status)} as pid ${pidOf(vm)}, was pid ${s.pid}`);
    const qemus = watch.forVm(s.uuid);
    if (qemus.length !== 1) problems.push(`steady VM ${s.uuid}: ${qemus.length} qemu processes (${qemus.map((q) => q.pid).join(', ')})`);
    const other = tap.forVm(s.uuid).filter((e) => e.event !== 'vm.started');
    if (other.length > 0) problems.push(`steady VM ${s.uuid}: events ${other.map((e) => `${e.event} (${e.message})`).join('; ')}`);
  }
  return problems;
}
