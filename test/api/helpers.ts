/**
 * An API process in the test (startApi, as `drover api` runs it) over a real
 * etcd under a fresh prefix, real HTTP on a free loopback port, and users
 * and tokens made the way `drover user|token` makes them.
 */
import { addUser, createToken } from '../../src/auth/accounts.js';
import { DEFAULT_LOGIN_POLICY } from '../../src/auth/authenticate.js';
import type { Role } from '../../src/contract/auth-records.js';
import { keySpace, type KeySpace } from '../../src/contract/keys.js';
import { startApi, type RunningApi } from '../../src/api/run-api.js';
import type { ApiSettings } from '../../src/api/context.js';
import { createLogger } from '../../src/lib/logger.js';
import { AuthRepository } from '../../src/store/auth-repository.js';
import { EventLog, type StoredEvent } from '../../src/store/event-log.js';
import { KvStore } from '../../src/store/kv-store.js';
import { apiEtcd, type TestEtcd } from '../helpers/etcd.js';

export interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: string; field?: string; items?: Array<Record<string, unknown>> };
  headers: Headers;
}

export interface ApiWorld {
  prefix: string;
  keys: KeySpace;
  kv: KvStore;
  auth: AuthRepository;
  events: EventLog;
  api: RunningApi;
  url: string;
  /** Adds a user and returns a token of it (role: the user's unless given). */
  user(name: string, role: Role, opts?: { password?: string; tokenRole?: Role }): Promise<string>;
  call(token: string | null, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer>;
  /** Same as call, but to another URL (a second API process). */
  callAt(url: string, token: string | null, method: string, path: string, body?: unknown): Promise<Answer>;
  vmCount(): Promise<number>;
  eventsOf(code: string): Promise<StoredEvent[]>;
  startAnother(): Promise<RunningApi>;
  close(): Promise<void>;
}

export const quietLogger = createLogger({ level: 'silent' });

async function request(url: string, token: string | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const h: Record<string, string> = { ...headers };
  if (token !== null) h.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${url}${path}`, { method, headers: h, body: payload });
  const text = await res.text();
  let parsed: Answer['body'];
  try {
    parsed = text ? (JSON.parse(text) as Answer['body']) : {};
  } catch {
    parsed = { raw: text };
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

export async function apiWorld(etcd: TestEtcd, settings: Partial<ApiSettings> = {}): Promise<ApiWorld> {
  const prefix = etcd.newPrefix();
  const keys = keySpace(prefix);
  const kv = new KvStore(etcd.client);
  const auth = new AuthRepository(kv, keys);
  const events = new EventLog(kv, keys);
  const etcdSettings = await apiEtcd(etcd, prefix);
  const start = () =>
    startApi({ ...etcdSettings, prefix, listen: '127.0.0.1:0', bootDirs: ['/srv/boot'], logger: quietLogger, settings: { login: { ...DEFAULT_LOGIN_POLICY, failureDelayMs: 50 }, streamRecheckMs: 500, ...settings } });
  const api = await start();
  const others: RunningApi[] = [];
  return {
    prefix,
    keys,
    kv,
    auth,
    events,
    api,
    url: api.url,
    user: async (name, role, opts = {}) => {
      await addUser(auth, { name, role, password: opts.password, now: new Date() });
      return (await createToken(auth, { user: name, role: opts.tokenRole, now: new Date() })).token;
    },
    call: (token, method, path, body, headers) => request(api.url, token, method, path, body, headers),
    callAt: (url, token, method, path, body) => request(url, token, method, path, body),
    vmCount: () => kv.count(keys.vmPrefix),
    eventsOf: async (code) => (await events.list()).filter((e) => e.event === code),
    startAnother: async () => {
      const another = await start();
      others.push(another);
      return another;
    },
    close: async () => {
      for (const o of others) await o.stop();
      await api.stop();
    },
  };
}

/** A small VM a `user` may create: an image disk, no host, no paths. */
export function userVm(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, spec: { memory: 64, disks: [{ image: 'debian-12' }] }, ...extra };
}
