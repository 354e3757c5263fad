/**
 * `drover check-heartbeat SECONDS`: the age of the agent's heartbeat file
 * (src/observability/heartbeat-file.ts), Vcycle's check-vcycled (seed 001).
 *
 *   age <= SECONDS            OK
 *   SECONDS < age <= CRIT     WARNING    (CRIT: --critical, default 2 x SECONDS)
 *   age > CRIT                CRITICAL
 *   no heartbeat file         CRITICAL   the state dir exists, but no agent has run in it
 *   state dir missing,
 *   unreadable, bad usage     UNKNOWN    the check itself is misconfigured
 */
import { stat } from 'node:fs/promises';
import { heartbeatAgeSeconds, heartbeatPath } from '../../observability/heartbeat-file.js';
import { DroverError } from '../../lib/errors.js';
import type { CheckResult } from './plugin-output.js';

/** Where `drover agent` keeps its state in the packaged set-up (drover.toml.example, docs/agent.md). */
export const DEFAULT_STATE_DIR = '/var/lib/drover';

export interface HeartbeatThresholds {
  warning: number;
  critical: number;
}

export function evaluateHeartbeat(age: number | null, path: string, t: HeartbeatThresholds): CheckResult {
  if (age === null) return { state: 'CRITICAL', text: `no heartbeat file ${path}: no agent is running with this state dir`, perfdata: [] };
  const limits = `(warning above ${t.warning} s, critical above ${t.critical} s)`;
  const perfdata = [{ label: 'age', value: Math.round(age * 10) / 10, uom: 's' as const, warn: t.warning, crit: t.critical, min: 0 }];
  const shown = Math.round(age);
  if (age > t.critical) return { state: 'CRITICAL', text: `the agent's heartbeat is ${shown} s old ${limits}`, perfdata };
  if (age > t.warning) return { state: 'WARNING', text: `the agent's heartbeat is ${shown} s old ${limits}`, perfdata };
  return { state: 'OK', text: `the agent's heartbeat is ${shown} s old ${limits}`, perfdata };
}

function unreadable(path: string, err: unknown): DroverError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new DroverError('USAGE', `Cannot read ${path} (${code}); run the check as a user that can read the agent's state dir.`);
}

export async function checkHeartbeat(stateDir: string, t: HeartbeatThresholds, now: Date = new Date()): Promise<CheckResult> {
  if (t.critical < t.warning) throw new DroverError('USAGE', `--critical ${t.critical} must not be below SECONDS (${t.warning}).`);
  try {
    if (!(await stat(stateDir)).isDirectory()) throw new DroverError('USAGE', `${stateDir} is not a directory; pass the agent's state dir with --state-dir.`);
  } catch (err) {
    if (err instanceof DroverError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DroverError('USAGE', `The state dir ${stateDir} does not exist; pass the agent's with --state-dir or DROVER_STATE_DIR.`);
    }
    throw unreadable(stateDir, err);
  }
  const path = heartbeatPath(stateDir);
  let age: number | null;
  try {
    age = await heartbeatAgeSeconds(path, now);
  } catch (err) {
    throw unreadable(path, err);
  }
  return evaluateHeartbeat(age, path, t);
}
