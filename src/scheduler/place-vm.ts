/**
 * The placement decision: a pure function from one VM and the hosts as the
 * scheduler sees them to a host name, or the reason none fits. Table-tested
 * in test/unit/place-vm.test.ts.
 *
 * Filters (all must pass): the host is ALIVE (its lease lives) and not
 * drained; it is in `spec.nodes` when that is set; its memory fits
 * (memory − reserved_memory − memory of VMs already placed there, each plus
 * the per-VM overhead); its vCPUs fit under the overcommit ratio.
 * Preference: `spec.autostart_node` when it passes the filters; then
 * `spread` (most free memory first) or `pack` (least free memory that fits).
 */
export type Strategy = 'spread' | 'pack';

export interface HostCapacity {
  name: string;
  alive: boolean;
  drained: boolean;
  cpus: number;
  memory: number;
  reservedMemory: number;
  /** Σ (spec.memory + overhead) of VMs placed on this host. */
  usedMemory: number;
  usedVcpus: number;
  vms: number;
}

export interface PlacementRequest {
  memory: number;
  vcpus: number;
  nodes?: readonly string[];
  autostartNode?: string;
}

export interface PlacementPolicy {
  strategy: Strategy;
  /** MiB added to each VM's memory for qemu's own overhead. */
  overheadMiB: number;
  /** vCPUs a host may hand out per physical CPU. */
  cpuOvercommit: number;
}

export type Placement = { ok: true; host: string } | { ok: false; reason: string };

export function freeMemory(h: HostCapacity): number {
  return h.memory - h.reservedMemory - h.usedMemory;
}

export function placeVm(req: PlacementRequest, hosts: readonly HostCapacity[], policy: PlacementPolicy): Placement {
  const need = req.memory + policy.overheadMiB;
  const allowed = req.nodes && req.nodes.length > 0 ? new Set(req.nodes) : null;
  const rejected = { dead: 0, drained: 0, nodes: 0, memory: 0, cpu: 0 };
  // One pass, no sort: this runs once per placement over every host.
  let best: HostCapacity | null = null;
  for (const h of hosts) {
    if (allowed && !allowed.has(h.name)) rejected.nodes++;
    else if (!h.alive) rejected.dead++;
    else if (h.drained) rejected.drained++;
    else if (freeMemory(h) < need) rejected.memory++;
    else if (h.usedVcpus + req.vcpus > h.cpus * policy.cpuOvercommit) rejected.cpu++;
    else {
      if (h.name === req.autostartNode) return { ok: true, host: h.name };
      if (best === null || better(h, best, policy.strategy)) best = h;
    }
  }
  if (best === null) return { ok: false, reason: explain(req, need, hosts.length, rejected) };
  return { ok: true, host: best.name };
}

/** spread: more free memory wins; pack: less; then fewer VMs, then the name. */
function better(a: HostCapacity, b: HostCapacity, strategy: Strategy): boolean {
  const byMemory = (strategy === 'spread' ? -1 : 1) * (freeMemory(a) - freeMemory(b));
  if (byMemory !== 0) return byMemory < 0;
  if (a.vms !== b.vms) return a.vms < b.vms;
  return a.name < b.name;
}

function explain(req: PlacementRequest, need: number, total: number, r: Record<string, number>): string {
  if (total === 0) return 'No host has registered yet.';
  const parts: string[] = [];
  if (r.nodes) parts.push(`${r.nodes} not in spec.nodes`);
  if (r.dead) parts.push(`${r.dead} dead`);
  if (r.drained) parts.push(`${r.drained} drained`);
  if (r.memory) parts.push(`${r.memory} without ${need} MiB free`);
  if (r.cpu) parts.push(`${r.cpu} without room for ${req.vcpus} more vCPU${req.vcpus > 1 ? 's' : ''}`);
  return `No host fits this VM: of ${total} host${total > 1 ? 's' : ''}, ${parts.join(', ')}.`;
}
