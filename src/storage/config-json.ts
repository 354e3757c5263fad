/** A cluster-wide setting `P/config/<name>` as JSON: null when absent; one sentence naming `hint` when it is not JSON. */
import type { KeySpace } from '../contract/keys.js';
import { DroverError } from '../lib/errors.js';
import type { KvStore } from '../store/kv-store.js';

export async function readConfigJson(kv: KvStore, keys: KeySpace, name: string, what: string, hint: string): Promise<unknown> {
  const entry = await kv.get(keys.config(name));
  if (!entry) return null;
  try {
    return JSON.parse(entry.raw);
  } catch {
    throw new DroverError('CONFIG_INVALID', `The ${what} setting ${keys.config(name)} is not valid JSON (${hint}).`);
  }
}
