/**
 * v2's check that no OTHER VMs run on this host (seed 004): a qemu process
 * is foreign when no record designates its uuid to this host (started by
 * hand, or drover's own VM whose record was deleted or moved away), or when
 * it runs a designated uuid but drover does not manage that process (a
 * second copy started by hand). Pure, so it is tested with tables.
 */
import type { DiscoveredVm } from '../hypervisor/hypervisor.js';

export interface ForeignVm {
  vm: DiscoveredVm;
  why: string;
}

export function findForeignVms(
  processes: readonly DiscoveredVm[],
  isDesignated: (uuid: string) => boolean,
  scope: { kind: 'all' } | { kind: 'state-dir'; stateDir: string },
): ForeignVm[] {
  const found: ForeignVm[] = [];
  for (const p of processes) {
    const designated = p.uuid !== undefined && isDesignated(p.uuid);
    if (p.managed && designated) continue;
    if (scope.kind === 'state-dir' && !p.argv.some((a) => a.includes(scope.stateDir))) continue;
    const label = p.name ? `${p.name} (pid ${p.pid})` : `pid ${p.pid}`;
    if (p.managed) {
      found.push({ vm: p, why: `qemu ${label} runs VM ${p.uuid ?? '?'} for drover, but no record designates it to this host any more (deleted or moved).` });
    } else if (designated) {
      found.push({ vm: p, why: `qemu ${label} runs VM ${p.uuid}, which is designated to this host, but drover does not manage that process.` });
    } else {
      found.push({ vm: p, why: `qemu ${label}${p.uuid ? ` with uuid ${p.uuid}` : ''} runs on this host but no record designates it here.` });
    }
  }
  return found;
}
