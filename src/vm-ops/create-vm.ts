/** `drover vm create`: validate, refuse a taken name, create only if absent. */
import { randomUUID } from 'node:crypto';
import { DroverError } from '../lib/errors.js';
import { ImageRepository } from '../store/image-repository.js';
import type { JsonObject } from '../store/vm-repository.js';
import type { VmStore } from './vm-store.js';
import { prepareVmRecord, refuseDeletingImages } from './prepare-vm.js';
import { vmName } from './vm-view.js';

export interface CreateOptions {
  /**
   * The uuid of a VM named `name`, if any. By default the VM list is read
   * from etcd; the API asks its watch-fed index instead (src/api/vm-index.ts).
   */
  findName?(name: string): Promise<string | undefined>;
}

/** Resolves with the record as written and the etcd revision of the write. */
export async function createVmAt(store: VmStore, input: unknown, opts: CreateOptions = {}): Promise<{ record: JsonObject; revision: string }> {
  const record = prepareVmRecord(input, randomUUID);
  await refuseDeletingImages(record, () => new ImageRepository(store.kv, store.keys).listValid());
  const uuid = String(record.uuid);
  // Names are unique by this check, not by etcd: two creates racing with the
  // same name could both pass it (docs/cli.md says so).
  const findName =
    opts.findName ??
    (async (name: string) => (await store.vms.list()).vms.find((v) => v.uuid !== uuid && vmName(v) === name)?.uuid);
  const taken = await findName(String(record.name));
  if (taken !== undefined && taken !== uuid) throw new DroverError('CONFLICT', `The name ${String(record.name)} is already used by VM ${taken}.`);
  const revision = await store.kv.putIfRevision(store.keys.vm(uuid), JSON.stringify(record), 'absent');
  if (revision === null) throw new DroverError('CONFLICT', `A VM with uuid ${uuid} already exists.`);
  return { record, revision };
}

export async function createVm(store: VmStore, input: unknown): Promise<JsonObject> {
  return (await createVmAt(store, input)).record;
}
