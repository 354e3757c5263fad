/**
 * Turns what a user hands `vm create` into the record to write: a uuid when
 * absent, the spec defaults (vcpus 1, vnc unix, restart always) and status
 * REQUESTED_NEW. Fields we do not know are kept as given. The result is
 * checked with the contract's schema; nothing is written when it fails.
 */
import { deletingImageRef, type ImageRecord } from '../contract/image-record.js';
import { vmRecordSchema, describeIssues } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import type { JsonObject } from '../store/vm-repository.js';

const SPEC_DEFAULTS: Readonly<JsonObject> = { vcpus: 1, vnc: 'unix', restart: 'always' };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function prepareVmRecord(input: unknown, newUuid: () => string): JsonObject {
  if (!isObject(input)) throw new DroverError('INVALID_SPEC', 'The record must be a JSON object.');
  const record: JsonObject = 'uuid' in input ? { ...input } : { uuid: newUuid(), ...input };
  if (record.status === undefined) record.status = 'REQUESTED_NEW';
  if (isObject(record.spec)) {
    const spec: JsonObject = { ...record.spec };
    for (const [k, v] of Object.entries(SPEC_DEFAULTS)) if (spec[k] === undefined) spec[k] = v;
    record.spec = spec;
  }
  const result = vmRecordSchema.safeParse(record);
  if (!result.success) throw new DroverError('INVALID_SPEC', describeIssues(result.error.issues));
  return record;
}

/**
 * Refuses a record whose disk names an image that `drover image delete` is
 * deleting (docs/storage.md): it would be gone, or the delete refused
 * because of this VM. `loadImages` is called only when a disk names an
 * image. (The agent checks again before it makes the disk.)
 */
export async function refuseDeletingImages(record: JsonObject, loadImages: () => Promise<ImageRecord[]>): Promise<void> {
  const disks = isObject(record.spec) && Array.isArray(record.spec.disks) ? record.spec.disks : [];
  const refs = disks.flatMap((d) => (isObject(d) && typeof d.image === 'string' ? [d.image] : []));
  if (refs.length === 0) return;
  const images = await loadImages();
  for (const ref of refs) {
    const deleting = deletingImageRef(ref, images);
    if (deleting) throw new DroverError('CONFLICT', `Image ${deleting.name}:${deleting.version} is being deleted (drover image delete), so no new VM may use it.`);
  }
}
