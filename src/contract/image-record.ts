/**
 * The image record, `P/image/<uuid>` (a drover key, docs/storage.md): what
 * `drover image import` learned about a disk image (format from
 * `qemu-img info`, size, sha256, where it came from). The bytes themselves
 * live in the fleet's image store under `imageObjectKey(uuid)`.
 *
 * Like the VM record, parsing never throws and unknown fields are kept.
 */
import { z } from 'zod';
import { describeIssues, UUID_RE, type ParseResult } from './vm-record.js';

/** An image name: what a VM's `spec.disks[].image` names (the newest active version). */
export const IMAGE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const IMAGE_VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;

/** Formats drover runs disks in; `qemu-img info` decides, never the file name. */
export const IMAGE_FORMATS = ['raw', 'qcow2'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/**
 * importing: the record exists, the upload is under way (or was interrupted:
 * `drover image delete` removes it); active: usable by VMs; deleting:
 * `drover image delete` claimed it and is checking that no VM uses it (then
 * the record goes, or goes back to its state if a VM does). A `deleting`
 * image is never used: `vm create` refuses it, and a start waits for the
 * outcome. An interrupted delete leaves it `deleting`: delete it again.
 */
export const IMAGE_STATES = ['importing', 'active', 'deleting'] as const;
export type ImageState = (typeof IMAGE_STATES)[number];

export const imageSourceSchema = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('file'), path: z.string() }),
  z.looseObject({
    type: z.literal('url'),
    url: z.string(),
    /** The server's validators at import time (Vcycle's cache rule: re-checked on the next import of the URL). */
    etag: z.string().optional(),
    last_modified: z.string().optional(),
  }),
]);
export type ImageSource = z.infer<typeof imageSourceSchema>;

export const imageRecordSchema = z.looseObject({
  uuid: z.string().regex(UUID_RE, 'must be a lower-case UUID'),
  name: z
    .string()
    .regex(IMAGE_NAME_RE, 'must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')
    .refine((n) => !UUID_RE.test(n), 'must not be a UUID (a disk naming a UUID means the image with that uuid)'),
  version: z.string().regex(IMAGE_VERSION_RE, 'must match ^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$'),
  format: z.enum(IMAGE_FORMATS),
  /** Bytes of the image file as stored (what sha256 covers). */
  size: z.int().min(0),
  /** Bytes the guest sees (qemu-img's virtual-size); an overlay is never smaller. */
  virtual_size: z.int().min(0),
  sha256: z.string().regex(SHA256_RE, 'must be 64 lower-case hex digits'),
  source: imageSourceSchema,
  created_at: z.string(),
  state: z.enum(IMAGE_STATES),
  owner: z.string().max(256).optional(),
});

export type ImageRecord = z.infer<typeof imageRecordSchema>;

/** Where an image's bytes are in the image store. */
export function imageObjectKey(uuid: string): string {
  return `images/${uuid}`;
}

export function parseImageRecord(raw: string, uuid: string): ParseResult<ImageRecord> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    return { ok: false, error: `The image record is not valid JSON (${(err as Error).message}).` };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, error: 'The image record must be a JSON object.' };
  }
  if (!UUID_RE.test(uuid)) return { ok: false, error: `The key's last segment ${JSON.stringify(uuid)} is not a lower-case UUID.` };
  const result = imageRecordSchema.safeParse(json);
  if (!result.success) return { ok: false, error: describeIssues(result.error.issues).replace(/^Field /, 'Image field ') };
  if (result.data.uuid !== uuid) {
    return { ok: false, error: `Image field uuid ${JSON.stringify(result.data.uuid)} does not match the key's uuid ${uuid}.` };
  }
  return { ok: true, value: result.data };
}

/**
 * How a disk names an image (`spec.disks[].image`): a uuid, `name:version`,
 * or a bare `name`, meaning the newest active version (by created_at).
 */
export type ImageRef = { kind: 'uuid'; uuid: string } | { kind: 'name'; name: string; version?: string };

export function parseImageRef(ref: string): ImageRef {
  if (UUID_RE.test(ref)) return { kind: 'uuid', uuid: ref };
  const colon = ref.indexOf(':');
  if (colon < 0) return { kind: 'name', name: ref };
  return { kind: 'name', name: ref.slice(0, colon), version: ref.slice(colon + 1) };
}

/** The record `ref` names among `images` (active ones only), or null. */
export function resolveImageRef(ref: string, images: readonly ImageRecord[]): ImageRecord | null {
  return pickImage(ref, images.filter((i) => i.state === 'active'));
}

/**
 * The image being deleted that `ref` would name if the delete were not under
 * way (it is, or a bare name's newest version is, `deleting`), or null. Such
 * a disk must not quietly take another version: it waits or is refused.
 */
export function deletingImageRef(ref: string, images: readonly ImageRecord[]): ImageRecord | null {
  const picked = pickImage(ref, images.filter((i) => i.state === 'active' || i.state === 'deleting'));
  return picked?.state === 'deleting' ? picked : null;
}

function pickImage(ref: string, candidates: readonly ImageRecord[]): ImageRecord | null {
  const r = parseImageRef(ref);
  if (r.kind === 'uuid') return candidates.find((i) => i.uuid === r.uuid) ?? null;
  const named = candidates.filter((i) => i.name === r.name && (r.version === undefined || i.version === r.version));
  named.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : a.uuid < b.uuid ? 1 : -1));
  return named[0] ?? null;
}

/**
 * Whether a disk's `image` may mean this image. Deliberately wide: a bare
 * name may have resolved to any version when the VM's disk was made, so
 * `image delete` refuses while any VM names the image's name.
 */
export function refMayMean(ref: string, image: Pick<ImageRecord, 'uuid' | 'name' | 'version'>): boolean {
  const r = parseImageRef(ref);
  if (r.kind === 'uuid') return r.uuid === image.uuid;
  return r.name === image.name && (r.version === undefined || r.version === image.version);
}
