/**
 * One etcd connection for the duration of one command, with the repositories
 * built on it. Calls get a short deadline so that an unreachable etcd fails
 * the command within a few seconds instead of hanging: a refused connection
 * fails at once; a silent endpoint costs the deadline on each of the
 * client's three attempts (about 6 s). Watches (`--wait`) have no deadline.
 */
import { keySpace, type KeySpace } from '../contract/keys.js';
import { AuthRepository } from '../store/auth-repository.js';
import { createEtcdClient } from '../store/etcd-client.js';
import { EventLog } from '../store/event-log.js';
import { HostRepository } from '../store/host-repository.js';
import { KvStore } from '../store/kv-store.js';
import { StatsRepository } from '../store/stats-repository.js';
import { VmRepository } from '../store/vm-repository.js';
import { translateEtcdError } from './etcd-errors.js';
import type { GlobalOptions } from './global-options.js';

const CALL_TIMEOUT_MS = 2000;

export interface StoreSession {
  readonly keys: KeySpace;
  readonly kv: KvStore;
  readonly vms: VmRepository;
  readonly events: EventLog;
  readonly hosts: HostRepository;
  /** Per-host stats summaries, `P/stats/<name>`. */
  readonly stats: StatsRepository;
  /** Users and tokens under P/auth/ (`drover user|token`). */
  readonly auth: AuthRepository;
}

export async function withStore<T>(opts: GlobalOptions, run: (s: StoreSession) => Promise<T>): Promise<T> {
  const client = createEtcdClient(opts.endpoints, { callTimeoutMs: CALL_TIMEOUT_MS, tls: opts.etcdTls });
  const keys = keySpace(opts.prefix);
  const kv = new KvStore(client);
  const session: StoreSession = {
    keys,
    kv,
    vms: new VmRepository(kv, keys),
    events: new EventLog(kv, keys),
    hosts: new HostRepository(kv, keys),
    stats: new StatsRepository(kv, keys),
    auth: new AuthRepository(kv, keys),
  };
  try {
    return await run(session);
  } catch (err) {
    throw translateEtcdError(err, opts.endpoints);
  } finally {
    client.close();
  }
}
