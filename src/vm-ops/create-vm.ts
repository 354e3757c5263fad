/** `drover vm create`: validate, refuse a taken name, create only if absent. */
import { randomUUID } from 'node:crypto';
import { DroverError } from '../lib/errors.js';
import { ImageRepository } from '../store/image-repository.js';
import type { JsonObject } from '../store/vm-repository.js';
import type { VmStore } from './vm-store.js';
import { prepareVmRecord, refuseDeletingImages } from './prepare-vm.js';
import { vmName } from './vm-view.js';

export async function createVm(store: VmStore, input: unknown): Promise<JsonObject> {
  const record = prepareVmRecord(input, randomUUID);
  await refuseDeletingImages(record, () => new ImageRepository(store.kv, store.keys).listValid());
  const uuid = String(record.uuid);
  // Names are unique by this check, not by etcd: two creates racing with the
  // same name could both pass it (docs/cli.md says so).
  const { vms } = await store.vms.list();
  const taken = vms.find((v) => v.uuid !== uuid && vmName(v) === record.name);
  if (taken) throw new DroverError('CONFLICT', `The name ${String(record.name)} is already used by VM ${taken.uuid}.`);
  if (!(await store.vms.create(uuid, record))) throw new DroverError('CONFLICT', `A VM with uuid ${uuid} already exists.`);
  return record;
}
