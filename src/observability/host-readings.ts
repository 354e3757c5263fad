/**
 * The host's own figures for the stats summary (docs/metrics.md): memory and
 * page cache from /proc/meminfo, free space and health of the state dir's
 * filesystem. Parsers are pure; the readers do one read each.
 */
import { open, readFile, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../lib/errors.js';
import type { HostStats } from '../contract/host-stats.js';

export type HostMemory = HostStats['memory'];
export type HostStorage = HostStats['storage'];

/** MemTotal, MemAvailable and Cached (the page cache) from /proc/meminfo, in bytes. */
export function parseMeminfo(text: string): HostMemory | null {
  const kib = (key: string): number | null => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : null;
  };
  const total = kib('MemTotal');
  const available = kib('MemAvailable');
  const cached = kib('Cached');
  if (total === null || available === null || cached === null) return null;
  return { total_bytes: total, available_bytes: available, page_cache_bytes: cached };
}

export async function readHostMemory(path = '/proc/meminfo'): Promise<HostMemory> {
  const parsed = parseMeminfo(await readFile(path, 'utf8'));
  if (!parsed) throw new Error(`${path} lacks MemTotal, MemAvailable or Cached`);
  return parsed;
}

/** The probe file the storage check writes, fsyncs and removes in the state dir. */
export const STORAGE_PROBE_FILE = '.storage-probe';

/**
 * Size and free space (what an unprivileged writer may still use) of the
 * filesystem holding `dir`, and whether a small write there succeeds: a
 * filesystem that turned read-only or lost its disk fails the probe while
 * statfs still answers. Never throws: a failure is `ok: false` with `error`.
 */
export async function checkStorage(dir: string): Promise<HostStorage> {
  let total_bytes = 0;
  let free_bytes = 0;
  try {
    const s = await statfs(dir);
    total_bytes = s.blocks * s.bsize;
    free_bytes = s.bavail * s.bsize;
  } catch (err) {
    return { path: dir, total_bytes, free_bytes, ok: false, error: `The state dir's filesystem cannot be read: ${errorMessage(err)}.` };
  }
  const probe = join(dir, STORAGE_PROBE_FILE);
  try {
    const fh = await open(probe, 'w', 0o600);
    try {
      await fh.writeFile(`${new Date().toISOString()}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await unlink(probe);
  } catch (err) {
    return { path: dir, total_bytes, free_bytes, ok: false, error: `The state dir cannot be written: ${errorMessage(err)}.` };
  }
  return { path: dir, total_bytes, free_bytes, ok: true };
}

/** Where the storage alarm stands: `low` below the free-space threshold, `error` when the check failed. */
export type StorageAlarmState = 'ok' | 'low' | 'error';

export interface StorageAlarmStep {
  state: StorageAlarmState;
  /** The event to report for this reading, only on a change of state. */
  event?: { code: 'host.storage_low' | 'host.storage_ok' | 'host.storage_error'; level: 'info' | 'warn' | 'error'; message: string };
}

/**
 * The storage alarm as a pure step: one event per transition, never one per
 * reading. `freeAlarmPercent` is the config's storage_free_alarm.
 */
export function stepStorageAlarm(prev: StorageAlarmState, s: HostStorage, freeAlarmPercent: number, host: string): StorageAlarmStep {
  const freePercent = s.total_bytes > 0 ? (100 * s.free_bytes) / s.total_bytes : 0;
  const state: StorageAlarmState = !s.ok ? 'error' : freePercent < freeAlarmPercent ? 'low' : 'ok';
  if (state === prev) return { state };
  const gib = (n: number): string => (n / 2 ** 30).toFixed(1);
  const where = `${s.path} on host ${host}`;
  switch (state) {
    case 'error':
      return { state, event: { code: 'host.storage_error', level: 'error', message: `Storage check of ${where} failed: ${s.error ?? 'unknown error'}` } };
    case 'low':
      return {
        state,
        event: {
          code: 'host.storage_low',
          level: 'warn',
          message: `Free space of ${where} is ${freePercent.toFixed(1)}% (${gib(s.free_bytes)} of ${gib(s.total_bytes)} GiB), under the ${freeAlarmPercent}% alarm.`,
        },
      };
    case 'ok':
    default:
      return {
        state,
        event: {
          code: 'host.storage_ok',
          level: 'info',
          message: `Storage of ${where} is healthy again: ${freePercent.toFixed(1)}% free (alarm at ${freeAlarmPercent}%).`,
        },
      };
  }
}
