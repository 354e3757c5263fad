/**
 * What the API's routes are handed (STYLE.md 8: native things passed in):
 * the etcd store with its repositories, a clock, a logger and the few
 * settings. The API is stateless: nothing here is kept between requests that
 * etcd does not hold, so several API processes can serve one etcd.
 */
import type { KeySpace } from '../contract/keys.js';
import type { Logger } from '../lib/logger.js';
import type { AuthRepository } from '../store/auth-repository.js';
import type { EventLog } from '../store/event-log.js';
import type { HostRepository } from '../store/host-repository.js';
import type { KvStore } from '../store/kv-store.js';
import type { VmRepository } from '../store/vm-repository.js';
import type { LoginPolicy, Principal } from '../auth/authenticate.js';
import type { Privilege } from '../auth/privileges.js';
import type { S3Credentials } from '../storage/s3/location.js';
import type { VmIndex } from './vm-index.js';

export interface ApiStore {
  readonly keys: KeySpace;
  readonly kv: KvStore;
  readonly vms: VmRepository;
  readonly events: EventLog;
  readonly hosts: HostRepository;
  readonly auth: AuthRepository;
}

export interface ApiSettings {
  /** Directories under which a `user` may name kernel and initrd files (besides the image store's). */
  readonly bootDirs: readonly string[];
  /** Set when serving HTTPS: cookies get `Secure`. */
  readonly tls: boolean;
  readonly login: LoginPolicy;
  /** The longest `?wait=` a request may ask for, in seconds. */
  readonly maxWaitSeconds: number;
  /** How often an event stream sends a keep-alive and re-checks its caller's credentials. */
  readonly streamRecheckMs: number;
  /** The name events written by this API carry in `host`. */
  readonly name: string;
  /** This process's S3 credentials for the backup store (list, delete); the AWS SDK's default chain when absent. */
  readonly s3Credentials?: S3Credentials;
  /** How consoles are reached: the VM's socket when it is on this machine, else its agent (auto); always through the agent (for tests and to check that path). */
  readonly consoleVia?: 'auto' | 'agent';
}

export interface ApiDeps {
  readonly store: ApiStore;
  /** Every VM record, kept by an etcd watch (vm-index.ts): what lists are served from. */
  readonly vmIndex: VmIndex;
  readonly settings: ApiSettings;
  readonly logger: Logger;
  readonly now: () => Date;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is asking; set by the authentication hook on every route that is not public. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** The privilege the route needs (checked before the handler; listed in the OpenAPI file). */
    privilege?: Privilege;
    /** Answered without credentials (login, openapi.json, healthz). */
    public?: boolean;
  }
}

/** The principal of an authenticated request; the hook guarantees it on non-public routes. */
export function principalOf(req: { principal: Principal | null }): Principal {
  if (!req.principal) throw new Error('a non-public route ran without a principal');
  return req.principal;
}
