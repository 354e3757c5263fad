/**
 * What `drover up` leaves in its state dir while it runs: its etcd endpoint
 * and the admin certificate's files, so that `bin/drover vm list` beside it
 * needs no flags (the CLI reads it when given no --etcd and no etcd TLS
 * flags or environment). Removed when drover up stops.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const UP_CLIENT_FILE = 'etcd-client.json';

export interface UpClient {
  endpoint: string;
  ca: string;
  cert: string;
  key: string;
}

/** The running drover up's client settings in `stateDir`, or null. */
export function readUpClient(stateDir: string): UpClient | null {
  try {
    const v = JSON.parse(readFileSync(join(stateDir, UP_CLIENT_FILE), 'utf8')) as Partial<UpClient>;
    return typeof v.endpoint === 'string' && typeof v.ca === 'string' && typeof v.cert === 'string' && typeof v.key === 'string' ? (v as UpClient) : null;
  } catch {
    return null;
  }
}
