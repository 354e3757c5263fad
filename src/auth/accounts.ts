/**
 * Managing users and tokens: what `drover user|token` (straight to etcd, for
 * operators) and the API's /users and /tokens routes both do. Secrets are
 * returned once, to the caller, and stored only as hashes.
 */
import { ROLES, USER_NAME_RE, type Role, type TokenRecord, type UserRecord } from '../contract/auth-records.js';
import { DroverError } from '../lib/errors.js';
import type { AuthRepository } from '../store/auth-repository.js';
import { roleWithin } from './privileges.js';
import { hashPassword, MIN_PASSWORD_LENGTH, newSecret, SECRET_KINDS } from './secrets.js';

/** A user as shown: never its password hash. */
export interface UserView {
  name: string;
  role: Role;
  has_password: boolean;
  created_at: string;
  created_by?: string;
}

/** A token as shown: never its hash. */
export interface TokenView {
  id: string;
  user: string;
  role: Role;
  created_at: string;
  expires_at?: string;
  description?: string;
  expired: boolean;
}

export function userView(u: UserRecord): UserView {
  return { name: u.name, role: u.role, has_password: u.password !== undefined, created_at: u.created_at, ...(u.created_by ? { created_by: u.created_by } : {}) };
}

export function tokenView(t: TokenRecord, now: Date): TokenView {
  return {
    id: t.id,
    user: t.user,
    role: t.role,
    created_at: t.created_at,
    ...(t.expires_at ? { expires_at: t.expires_at } : {}),
    ...(t.description ? { description: t.description } : {}),
    expired: t.expires_at !== undefined && Date.parse(t.expires_at) <= now.getTime(),
  };
}

export function checkUserName(name: string): void {
  if (!USER_NAME_RE.test(name)) {
    throw new DroverError('USAGE', `The user name ${JSON.stringify(name)} is not valid: it must be a lower-case letter, then up to 62 of a-z 0-9 _ . -.`);
  }
}

export function checkRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role)) throw new DroverError('USAGE', `The role ${JSON.stringify(role)} is not one of ${ROLES.join(', ')}.`);
  return role as Role;
}

export interface AddUser {
  name: string;
  role: Role;
  password?: string;
  createdBy?: string;
  now: Date;
}

export async function addUser(auth: AuthRepository, req: AddUser): Promise<UserView> {
  checkUserName(req.name);
  if (req.password !== undefined && req.password.length < MIN_PASSWORD_LENGTH) {
    throw new DroverError('USAGE', `The password must have at least ${MIN_PASSWORD_LENGTH} characters.`);
  }
  const record: UserRecord = {
    name: req.name,
    role: req.role,
    created_at: req.now.toISOString(),
    ...(req.createdBy ? { created_by: req.createdBy } : {}),
    ...(req.password !== undefined ? { password: await hashPassword(req.password) } : {}),
  };
  if (!(await auth.createUser(record))) throw new DroverError('CONFLICT', `The user ${req.name} already exists.`);
  return userView(record);
}

export async function setPassword(auth: AuthRepository, name: string, password: string): Promise<void> {
  if (password.length < MIN_PASSWORD_LENGTH) throw new DroverError('USAGE', `The password must have at least ${MIN_PASSWORD_LENGTH} characters.`);
  const hash = await hashPassword(password);
  if (!(await auth.updateUser(name, (u) => ({ ...u, password: hash })))) throw new DroverError('NOT_FOUND', `There is no user ${name}.`);
}

export async function deleteUser(auth: AuthRepository, name: string): Promise<void> {
  if (!(await auth.deleteUser(name))) throw new DroverError('NOT_FOUND', `There is no user ${name}.`);
}

export interface CreateToken {
  user: string;
  /** Default: the user's role. */
  role?: Role;
  /** Seconds from now; no expiry when absent. */
  expiresIn?: number;
  description?: string;
  /** The token the request was made with: the new one expires no later and is revoked with it. */
  parent?: TokenRecord;
  now: Date;
}

/** The longest a token may live: ten years. */
export const MAX_TOKEN_SECONDS = 10 * 365 * 86400;

export interface CreatedToken extends TokenView {
  /** The secret: shown once, never stored. */
  token: string;
}

export async function createToken(auth: AuthRepository, req: CreateToken): Promise<CreatedToken> {
  const user = await auth.getUser(req.user);
  if (!user) throw new DroverError('NOT_FOUND', `There is no user ${req.user}.`);
  const role = req.role ?? user.role;
  if (!roleWithin(role, user.role)) {
    throw new DroverError('FORBIDDEN', `A token of user ${user.name} (role ${user.role}) cannot have the role ${role}: a token's role may not exceed its user's.`);
  }
  if (req.expiresIn !== undefined && !(req.expiresIn > 0 && req.expiresIn <= MAX_TOKEN_SECONDS)) {
    throw new DroverError('USAGE', 'The expiry must be a duration from 1s to 10 years, such as 30d.');
  }
  let expiresAt = req.expiresIn !== undefined ? new Date(req.now.getTime() + req.expiresIn * 1000).toISOString() : undefined;
  const cap = req.parent?.expires_at;
  if (cap !== undefined && (expiresAt === undefined || Date.parse(expiresAt) > Date.parse(cap))) expiresAt = cap;
  const secret = newSecret(SECRET_KINDS.token);
  const record: TokenRecord = {
    id: secret.id,
    user: user.name,
    role,
    secret_sha256: secret.sha256,
    created_at: req.now.toISOString(),
    ...(expiresAt !== undefined ? { expires_at: expiresAt } : {}),
    ...(req.description ? { description: req.description } : {}),
    ...(req.parent ? { parent_id: req.parent.id } : {}),
  };
  if (!(await auth.createToken(record))) throw new DroverError('CONFLICT', 'A token id collided; try again.', true);
  return { ...tokenView(record, req.now), token: secret.text };
}

export async function revokeToken(auth: AuthRepository, id: string): Promise<void> {
  if (!(await auth.revokeToken(id))) throw new DroverError('NOT_FOUND', `There is no token ${id}.`);
}

/** How long a one-time login link stays valid. */
export const LINK_TTL_SECONDS = 15 * 60;

/** A one-time login link's secret (`drover up` prints it in a URL fragment). */
export async function createLoginLink(auth: AuthRepository, user: string, now: Date, ttlSeconds = LINK_TTL_SECONDS): Promise<string> {
  if (!(await auth.getUser(user))) throw new DroverError('NOT_FOUND', `There is no user ${user}.`);
  const secret = newSecret(SECRET_KINDS.link);
  await auth.createLink({ id: secret.id, user, secret_sha256: secret.sha256, expires_at: new Date(now.getTime() + ttlSeconds * 1000).toISOString() }, ttlSeconds);
  return secret.text;
}
