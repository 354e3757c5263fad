/**
 * Where the fleet's image store is: one cluster-wide record in etcd,
 * `P/config/image_store` (docs/storage.md), written by `drover image store
 * set` (or `drover up`, which sets a directory under its state dir when
 * none is set). Credentials are never in it: each host brings its own
 * (agent config s3_access_key_id / s3_secret_access_key, or the AWS_*
 * environment), so the strict schema refuses any other key.
 */
import { z } from 'zod';
import type { KeySpace } from '../contract/keys.js';
import { describeIssues } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';
import type { KvStore } from '../store/kv-store.js';
import { readConfigJson } from './config-json.js';
import { DirImageStore } from './dir-image-store.js';
import type { ImageStore } from './image-store.js';
import { s3LocationSchema, type S3Credentials } from './s3/location.js';
import type { ImageUploadSettings } from './s3-image-store.js';

export const IMAGE_STORE_CONFIG = 'image_store';

export const imageStoreConfigSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('dir'),
    path: z.string().refine((p) => p.startsWith('/') && !p.split('/').includes('..'), 'must be an absolute path without ".." segments'),
  }),
  z.strictObject({
    type: z.literal('s3'),
    ...s3LocationSchema.shape,
    /** Prepended to every object key, e.g. "drover/". */
    prefix: z.string().regex(/^([A-Za-z0-9_][A-Za-z0-9._-]*\/)*$/, 'must be empty or end in "/" (e.g. "drover/")').default(''),
  }),
]);

export type ImageStoreConfig = Readonly<z.infer<typeof imageStoreConfigSchema>>;

/** Parses `P/config/image_store`; one sentence naming the bad field otherwise. */
export function parseImageStoreConfig(json: unknown): ImageStoreConfig {
  const r = imageStoreConfigSchema.safeParse(json);
  if (!r.success) {
    throw new DroverError('CONFIG_INVALID', `The image store setting is invalid: ${describeIssues(r.error.issues).replace(/\.$/, '')} (drover image store set).`);
  }
  return Object.freeze(r.data);
}

/** The stored setting, or null when none is set. */
export async function readImageStoreConfig(kv: KvStore, keys: KeySpace): Promise<ImageStoreConfig | null> {
  const json = await readConfigJson(kv, keys, IMAGE_STORE_CONFIG, 'image store', 'drover image store set');
  return json === null ? null : parseImageStoreConfig(json);
}

/** Like readImageStoreConfig, but a missing setting is an error that says what to do. */
export async function requireImageStoreConfig(kv: KvStore, keys: KeySpace): Promise<ImageStoreConfig> {
  const config = await readImageStoreConfig(kv, keys);
  if (!config) {
    throw new DroverError('NOT_FOUND', 'No image store is set for this cluster; set one with `drover image store set dir PATH` or `drover image store set s3 --bucket B ...`.');
  }
  return config;
}

/**
 * The store a setting names. The AWS SDK (slow to load) is loaded only for
 * an S3 store; `upload` sets its multipart uploads (the backup keys of the
 * same names; chunter's defaults when absent).
 */
export async function openImageStore(config: ImageStoreConfig, credentials?: S3Credentials, upload?: ImageUploadSettings): Promise<ImageStore> {
  if (config.type === 'dir') return new DirImageStore(config.path);
  const [{ createS3Client }, { S3ImageStore }] = await Promise.all([import('./s3/client.js'), import('./s3-image-store.js')]);
  const client = createS3Client({ ...config, ...(credentials !== undefined ? { credentials } : {}) });
  return new S3ImageStore({ client, bucket: config.bucket, keyPrefix: config.prefix, ...(upload !== undefined ? { upload } : {}) });
}

/** One line for people: `dir /srv/images` or `s3 s3://bucket/prefix (endpoint, region, path-style)`. */
export function describeImageStoreConfig(config: ImageStoreConfig): string {
  if (config.type === 'dir') return `dir ${config.path}`;
  const where = [config.endpoint ?? 'AWS', `region ${config.region}`, ...(config.path_style ? ['path-style'] : [])];
  return `s3 s3://${config.bucket}/${config.prefix} (${where.join(', ')})`;
}

/** Sets a directory store at `path` unless a store is set already (`drover up`); true when it set one. */
export async function setDefaultImageStore(kv: KvStore, keys: KeySpace, path: string): Promise<boolean> {
  const config = parseImageStoreConfig({ type: 'dir', path });
  return kv.putIf(keys.config(IMAGE_STORE_CONFIG), JSON.stringify(config), 'absent');
}
