/**
 * `drover etcd setup-auth` (docs/security.md): creates etcd's `root` user,
 * the `admin`, `scheduler`, `api` and `host-<name>` users (no passwords:
 * they log in with their certificates, whose CN names them), one role per
 * component with the grants of etcd-roles.ts, and turns authentication on.
 *
 * Safe to run again, also on a cluster whose auth is on already (as the
 * admin certificate, which holds the root role): what exists is kept,
 * missing users, roles and grants are added. `drover up` runs it at each
 * start.
 */
import { Range, type Etcd3 } from 'etcd3';
import type { KeySpace } from '../contract/keys.js';
import { grantsFor, roleName, type Component, type Grant } from './etcd-roles.js';
import { hostUser } from './pki.js';

export interface SetupAuthOptions {
  keys: KeySpace;
  /** Hosts to create `host-<name>` users for. */
  hosts: readonly string[];
  /** Hosts whose agent also runs the scheduler (agent config `scheduler = true`): their user gets the scheduler role too. */
  schedulerHosts?: readonly string[];
}

export interface SetupAuthResult {
  users: string[];
  roles: string[];
}

export async function setupAuth(client: Etcd3, opts: SetupAuthOptions): Promise<SetupAuthResult> {
  const { keys } = opts;
  const users = await etcdUsers(client);
  const existingRoles = new Set(await client.getRoles().then((rs) => rs.map((r) => r.name)));
  const components: Array<{ user: string; who: Component }> = [
    { user: 'scheduler', who: { kind: 'scheduler' } },
    { user: 'api', who: { kind: 'api' } },
    ...opts.hosts.map((name) => ({ user: hostUser(name), who: { kind: 'host', name } as Component })),
  ];
  const roles: string[] = [];
  for (const { user, who } of components) {
    const role = roleName(keys, user);
    if (!existingRoles.has(role)) {
      await client.role(role).create();
      existingRoles.add(role);
    }
    await client.role(role).grant(grantsFor(keys, who).map(toEtcdGrant));
    await users.ensure(user);
    await users.grant(user, role);
    roles.push(role);
  }
  for (const name of opts.schedulerHosts ?? []) {
    await users.ensure(hostUser(name));
    await users.grant(hostUser(name), roleName(keys, 'scheduler'));
  }
  await enableAuth(client, users);
  return { users: ['root', 'admin', ...components.map((c) => c.user)], roles };
}

/**
 * Turns authentication on, with `root` (etcd refuses without it) and
 * `admin` (the certificate operators use) holding the root role. Safe to
 * run again: etcd answers OK when authentication is on already.
 */
export async function enableAuth(client: Etcd3, users?: EtcdUsers): Promise<void> {
  const u = users ?? (await etcdUsers(client));
  for (const name of ['root', 'admin']) {
    await u.ensure(name);
    await u.grant(name, 'root');
  }
  await client.auth.authEnable();
}

interface EtcdUsers {
  ensure(name: string): Promise<void>;
  grant(user: string, role: string): Promise<void>;
}

/** Users without passwords (they log in with certificates), created when missing; role grants made when missing. */
async function etcdUsers(client: Etcd3): Promise<EtcdUsers> {
  const existing = new Set(await client.getUsers().then((us) => us.map((u) => u.name)));
  return {
    async ensure(name) {
      if (existing.has(name)) return;
      await client.auth.userAdd({ name, password: '', options: { no_password: true } });
      existing.add(name);
    },
    async grant(user, role) {
      const has = await client.user(user).roles();
      if (!has.some((r) => r.name === role)) await client.auth.userGrantRole({ user, role });
    },
  };
}

function toEtcdGrant(g: Grant): { permission: Grant['permission']; range: Range } | { permission: Grant['permission']; key: string } {
  return g.key !== undefined ? { permission: g.permission, key: g.key } : { permission: g.permission, range: Range.prefix(g.prefix ?? '') };
}
