/**
 * Loads and merges the agent's configuration sources into one frozen,
 * validated AgentConfig. `mergeConfigLayers` is pure and unit-tested; the
 * loader only reads files.
 */
import { readFile, readdir } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import type { z } from 'zod';
import { agentConfigSchema, RENAMED_KEYS, type AgentConfig } from './agent-config.js';
import { DroverError, errorMessage } from '../lib/errors.js';

export type ConfigLayer = { source: string; values: Record<string, unknown> };

/** Environment variables the agent understands (CONTRACT.md section 6). */
export const ENV_KEYS: Readonly<Record<string, string>> = {
  DROVER_ETCD: 'etcd',
  DROVER_ETCD_CA: 'etcd_ca',
  DROVER_ETCD_CERT: 'etcd_cert',
  DROVER_ETCD_KEY: 'etcd_key',
  DROVER_NAME: 'name',
  DROVER_STATE_DIR: 'state_dir',
  DROVER_ACCEL: 'accel',
  DROVER_PREFIX: 'prefix',
  DROVER_NOTIFY_EMAIL: 'notify_email',
  DROVER_SMTP_URL: 'smtp_url',
  DROVER_S3_ACCESS_KEY_ID: 's3_access_key_id',
  DROVER_S3_SECRET_ACCESS_KEY: 's3_secret_access_key',
  DROVER_METRICS_LISTEN: 'metrics_listen',
  DROVER_CONSOLE_LISTEN: 'console_listen',
};

const LIST_KEYS = new Set(['etcd', 'notify_email']);

/** "a,b" and ["a","b"] both become ["a","b"] for list-valued keys. */
function normalizeValue(key: string, value: unknown): unknown {
  if (LIST_KEYS.has(key) && typeof value === 'string') {
    return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  }
  return value;
}

export function envLayer(env: Readonly<Record<string, string | undefined>>): ConfigLayer {
  const values: Record<string, unknown> = {};
  for (const [name, key] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v !== undefined && v !== '') values[key] = normalizeValue(key, v);
  }
  return { source: 'the environment', values };
}

/** Merges layers (later wins), then validates; every problem names its key and source. */
export function mergeConfigLayers(layers: readonly ConfigLayer[]): AgentConfig {
  return mergeLayers(layers, agentConfigSchema);
}

export function mergeLayers<S extends z.ZodType<object>>(layers: readonly ConfigLayer[], schema: S): Readonly<z.infer<S>> {
  const merged: Record<string, unknown> = {};
  const sourceOf: Record<string, string> = {};
  for (const layer of layers) {
    for (const [rawKey, value] of Object.entries(layer.values)) {
      if (value === undefined) continue;
      const renamed = RENAMED_KEYS[rawKey];
      if (renamed !== undefined) {
        throw new DroverError('CONFIG_INVALID', `Config key "${rawKey}" in ${layer.source} is not known; use "${renamed}" instead.`);
      }
      merged[rawKey] = normalizeValue(rawKey, value);
      sourceOf[rawKey] = layer.source;
    }
  }
  const result = schema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      throw new DroverError('CONFIG_INVALID', `Config key "${key}" in ${sourceOf[key] ?? 'the config'} is not known.`);
    }
    const key = issue.path.map(String).join('.');
    const where = sourceOf[String(issue.path[0])];
    const message = issue.message.replace(/^Invalid input: /, '');
    if (where === undefined && issue.code === 'invalid_type') {
      throw new DroverError('CONFIG_INVALID', `Config key "${key}" is required (flag, environment or config file).`);
    }
    throw new DroverError('CONFIG_INVALID', `Config key "${key}"${where ? ` in ${where}` : ''} is invalid: ${message}.`);
  }
  return Object.freeze(result.data);
}

async function readTomlLayer(path: string): Promise<ConfigLayer> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new DroverError('CONFIG_INVALID', `Config file ${path} cannot be read: ${errorMessage(err)}.`);
  }
  try {
    return { source: path, values: parseToml(text) as Record<string, unknown> };
  } catch (err) {
    const first = errorMessage(err).split('\n')[0];
    throw new DroverError('CONFIG_INVALID', `Config file ${path} is not valid TOML: ${first}`);
  }
}

/** The file, then `<file>.d/*.toml` in alphanumeric order. */
export async function readConfigFiles(file: string): Promise<ConfigLayer[]> {
  const layers = [await readTomlLayer(file)];
  let names: string[] = [];
  try {
    names = (await readdir(`${file}.d`)).filter((n) => n.endsWith('.toml')).sort();
  } catch {
    // no .d directory: fine
  }
  for (const n of names) layers.push(await readTomlLayer(`${file}.d/${n}`));
  return layers;
}

export interface ConfigSources {
  file?: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Values from command-line flags, already keyed by config key. */
  flags: Record<string, unknown>;
}

export async function loadAgentConfig(sources: ConfigSources): Promise<AgentConfig> {
  const fileLayers = sources.file ? await readConfigFiles(sources.file) : [];
  return mergeConfigLayers([...fileLayers, envLayer(sources.env), { source: 'the command line', values: sources.flags }]);
}
