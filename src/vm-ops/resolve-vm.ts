/**
 * Finding the VM a user means: a full uuid, a unique uuid prefix of at least
 * four characters, or an exact name. A word that is both a name and another
 * VM's uuid prefix is ambiguous rather than silently picking one.
 */
import { DroverError } from '../lib/errors.js';
import type { StoredVm, VmRepository } from '../store/vm-repository.js';
import { vmLabel, vmName } from './vm-view.js';

export const MIN_PREFIX = 4;

export function selectVm(vms: readonly StoredVm[], ref: string): StoredVm {
  const word = ref.trim();
  if (word === '') throw new DroverError('USAGE', 'A VM must be given by uuid, uuid prefix or name.');
  const lower = word.toLowerCase();
  const exact = vms.find((v) => v.uuid === lower);
  if (exact) return exact;
  const candidates = vms.filter((v) => vmName(v) === word || (lower.length >= MIN_PREFIX && v.uuid.startsWith(lower)));
  const [only, ...others] = candidates;
  if (only && others.length === 0) return only;
  if (only) {
    const list = candidates.map(vmLabel).join(', ');
    throw new DroverError('AMBIGUOUS', `${JSON.stringify(word)} matches ${candidates.length} VMs: ${list}; give more of the uuid.`);
  }
  const hint = lower.length < MIN_PREFIX && /^[0-9a-f-]+$/.test(lower) ? ` (a uuid prefix needs at least ${MIN_PREFIX} characters)` : '';
  throw new DroverError('NOT_FOUND', `No VM matches ${JSON.stringify(word)}${hint}.`);
}

export async function resolveVm(repo: VmRepository, ref: string): Promise<StoredVm> {
  // A full uuid needs one read; anything else needs the list.
  const direct = /^[0-9a-f-]{36}$/i.test(ref.trim()) ? await repo.get(ref.trim().toLowerCase()) : null;
  if (direct) return direct;
  const { vms } = await repo.list();
  return selectVm(vms, ref);
}
