/**
 * The image store boundary (STYLE.md 1): where the fleet keeps image bytes.
 * `dir-image-store.ts` (a directory: the embedded default, or a shared
 * filesystem) and `s3-image-store.ts` (an S3 bucket) implement it, and both
 * pass one contract suite (test/contract/image-store.contract.ts).
 *
 * Keys are relative, `/`-separated paths of safe characters (`images/<uuid>`):
 * `assertStoreKey` refuses anything else, so no key can name a file outside a
 * directory store's root.
 *
 * `put` is verified: the store hashes the bytes as they pass and refuses
 * (CHECKSUM_MISMATCH, nothing left behind) a stream whose size or sha256
 * differs from what the caller said. A reader never sees a half-written
 * object: the directory store writes a temp file and renames it; S3 makes an
 * object visible only once its upload completed.
 */
import type { Readable } from 'node:stream';
import { DroverError } from '../lib/errors.js';

export interface StoredObjectInfo {
  key: string;
  size: number;
  /** Changes whenever the object's bytes may have changed (S3's ETag; size+mtime for a directory). */
  etag: string;
  lastModified: Date;
  /** The sha256 recorded at put time, when the store keeps one. */
  sha256?: string;
}

export interface PutOptions {
  size: number;
  /** Lower-case hex; the put fails if the bytes do not hash to it. */
  sha256: string;
  /** Called with the bytes sent so far (for progress bars). */
  onProgress?(sent: number): void;
}

export interface ImageStore {
  /** Human-readable location for messages: `s3://bucket/` or `dir:/srv/images`. */
  readonly description: string;
  put(key: string, body: Readable, opts: PutOptions): Promise<StoredObjectInfo>;
  /** The object's bytes and what head() says; NOT_FOUND when absent. */
  get(key: string): Promise<{ info: StoredObjectInfo; body: Readable }>;
  /** What the store knows of the object, or null when absent. */
  head(key: string): Promise<StoredObjectInfo | null>;
  /** Removes the object; absent is fine. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<StoredObjectInfo[]>;
}

const KEY_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;

/** Refuses a key that is not a relative path of safe segments (no `..`, no leading `/`, no dot-files). */
export function assertStoreKey(key: string): void {
  const parts = key.split('/');
  if (key.length > 1024 || parts.some((p) => !KEY_SEGMENT.test(p))) {
    throw new DroverError('USAGE', `The image store key ${JSON.stringify(key)} is not a relative path of letters, digits, ".", "_" and "-".`);
  }
}

/** Refuses a prefix that could not start a valid key (empty is fine: everything). */
export function assertStorePrefix(prefix: string): void {
  if (prefix === '') return;
  assertStoreKey(prefix.endsWith('/') ? `${prefix}x` : prefix);
}

export function checksumMismatch(what: string, expected: { size: number; sha256: string }, got: { size: number; sha256: string }): DroverError {
  const why = got.size !== expected.size
    ? `${got.size} bytes instead of ${expected.size}`
    : `sha256 ${got.sha256.slice(0, 12)}… instead of ${expected.sha256.slice(0, 12)}…`;
  return new DroverError('CHECKSUM_MISMATCH', `${what} had ${why}, so it was refused.`, false);
}
