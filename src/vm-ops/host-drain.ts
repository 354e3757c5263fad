/**
 * Draining a host (docs/scheduler.md): `drained: true` in its record, so the
 * scheduler places no new VM there; written with a compare-and-swap by
 * `drover host drain|undrain` and by the API. Moving the VMs off is the
 * CLI's `--move` (src/cli/host/drain-move.ts).
 */
import { DroverError } from '../lib/errors.js';
import { rawObject } from '../store/vm-repository.js';
import type { VmStore } from './vm-store.js';

/** Sets or clears `drained`; true when it changed something. */
export async function setHostDrained(store: Pick<VmStore, 'kv' | 'keys'>, name: string, drained: boolean): Promise<boolean> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const entry = await store.kv.get(store.keys.host(name));
    if (!entry) throw new DroverError('NOT_FOUND', `No host is named ${JSON.stringify(name)}.`);
    const record = rawObject(entry.raw);
    if (!record) throw new DroverError('CONFLICT', `The record of host ${name} is not a JSON object; fix it before draining.`);
    if ((record.drained === true) === drained) return false;
    const next = { ...record };
    if (drained) next.drained = true;
    else delete next.drained;
    if (await store.kv.putIf(entry.key, JSON.stringify(next), entry.modRevision)) return true;
  }
  throw new DroverError('CONFLICT', `Host ${name} kept changing under 10 attempts to drain it; try again.`, true);
}
