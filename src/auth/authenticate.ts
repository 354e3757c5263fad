/**
 * Who is asking: a bearer token or a session cookie turned into a Principal,
 * and the login that opens a session. Every check reads etcd (no cache), so
 * a revoked token, a deleted user or a lowered role counts on the next
 * request, on every API process.
 */
import type { Role } from '../contract/auth-records.js';
import { DroverError } from '../lib/errors.js';
import type { AuthRepository } from '../store/auth-repository.js';
import { CheckLimiter } from './check-limiter.js';
import { effectiveRole } from './privileges.js';
import { decoyHash, newSecret, parseSecret, randomText, SECRET_KINDS, secretMatches, sha256Hex, verifyPassword } from './secrets.js';

export interface Principal {
  user: string;
  role: Role;
  /** The API token used, directly or by the session it opened; never the token itself. */
  tokenId?: string;
  via: 'token' | 'session';
  /** With a session: the CSRF token its state-changing calls must send. */
  csrf?: string;
  sessionId?: string;
}

function expired(expiresAt: string | undefined, now: Date): boolean {
  return expiresAt !== undefined && Date.parse(expiresAt) <= now.getTime();
}

/** The principal of an API token (`drt_...`), or null when it is unknown, wrong, expired or its user is gone. */
export async function authenticateToken(auth: AuthRepository, text: string, now: Date): Promise<Principal | null> {
  const parsed = parseSecret(SECRET_KINDS.token, text);
  if (!parsed) return null;
  const token = await auth.getToken(parsed.id);
  if (!token || !secretMatches(parsed.secret, token.secret_sha256) || expired(token.expires_at, now)) return null;
  const user = await auth.getUser(token.user);
  const role = user ? effectiveRole(token.role, user.role) : null;
  if (!user || !role) return null;
  return { user: user.name, role, tokenId: token.id, via: 'token' };
}

/** The principal of a session cookie (`drs_...`); the session's token, if any, must still be valid too. */
export async function authenticateSession(auth: AuthRepository, text: string, now: Date): Promise<Principal | null> {
  const parsed = parseSecret(SECRET_KINDS.session, text);
  if (!parsed) return null;
  const session = await auth.getSession(parsed.id);
  if (!session || !secretMatches(parsed.secret, session.secret_sha256) || expired(session.expires_at, now)) return null;
  const user = await auth.getUser(session.user);
  const role = user ? effectiveRole(session.role, user.role) : null;
  if (!user || !role) return null;
  if (session.token_id !== undefined) {
    const token = await auth.getToken(session.token_id);
    if (!token || expired(token.expires_at, now) || !effectiveRole(token.role, user.role)) return null;
  }
  return { user: user.name, role, via: 'session', csrf: session.csrf, sessionId: session.id, ...(session.token_id ? { tokenId: session.token_id } : {}) };
}

export type LoginCredentials = { user: string; password: string } | { token: string };

export interface LoginPolicy {
  /** Failures per user and per address within the window before logins are refused. */
  maxFailures: number;
  windowSeconds: number;
  /** Added to every failed attempt: guessing gets slow before it gets refused. */
  failureDelayMs: number;
  sessionTtlSeconds: number;
}

export const DEFAULT_LOGIN_POLICY: LoginPolicy = { maxFailures: 10, windowSeconds: 15 * 60, failureDelayMs: 500, sessionTtlSeconds: 12 * 3600 };

export interface OpenedSession {
  principal: Principal;
  /** The cookie's value: `drs_<id>_<secret>`. */
  cookie: string;
  csrf: string;
  expiresAt: string;
}

export type LoginOutcome =
  | { ok: true; session: OpenedSession }
  | { ok: false; reason: 'wrong' | 'throttled'; user?: string; retryAfterSeconds?: number; firstRefusal?: boolean };

/** Throttle keys: sha256 so neither a user name nor an address appears in a key. */
function throttleIds(user: string | undefined, address: string): string[] {
  return [`addr-${sha256Hex(`addr:${address}`).slice(0, 32)}`, ...(user !== undefined ? [`user-${sha256Hex(`user:${user}`).slice(0, 32)}`] : [])];
}

async function principalForLogin(auth: AuthRepository, creds: LoginCredentials, now: Date): Promise<Principal | null> {
  if ('token' in creds) {
    const link = parseSecret(SECRET_KINDS.link, creds.token);
    if (link) {
      // A one-time link: taken (deleted) before it is checked, so it works once even when wrong.
      const stored = await auth.takeLink(link.id);
      if (!stored || !secretMatches(link.secret, stored.secret_sha256) || expired(stored.expires_at, now)) return null;
      const user = await auth.getUser(stored.user);
      return user ? { user: user.name, role: user.role, via: 'session' } : null;
    }
    return authenticateToken(auth, creds.token, now);
  }
  const user = await auth.getUser(creds.user);
  // An unknown user costs the same scrypt as a wrong password, so timing does not tell them apart.
  const ok = await verifyPassword(creds.password, user?.password ?? (await decoyHash()));
  return ok && user?.password ? { user: user.name, role: user.role, via: 'session' } : null;
}

const checks = new CheckLimiter(2, 32);

/**
 * Checks the credentials and opens a web session. Every attempt is counted
 * per user name and per address in etcd (shared by every API process)
 * BEFORE it is checked, and uncounted once it succeeds: a burst of parallel
 * guesses cannot all pass the limit. Past `maxFailures` in the window,
 * logins are refused without being checked; `firstRefusal` marks the one
 * attempt that crossed the limit (the API logs that one, not every refusal).
 */
export async function login(auth: AuthRepository, creds: LoginCredentials, address: string, now: Date, policy: LoginPolicy = DEFAULT_LOGIN_POLICY): Promise<LoginOutcome> {
  const userName = 'user' in creds ? creds.user : undefined;
  const ids = throttleIds(userName, address);
  const counts = await Promise.all(ids.map((id) => auth.addFailure(id, policy.windowSeconds)));
  if (counts.some((n) => n > policy.maxFailures)) {
    return { ok: false, reason: 'throttled', user: userName, retryAfterSeconds: policy.windowSeconds, firstRefusal: counts.some((n) => n === policy.maxFailures + 1) };
  }
  const principal = await checks.run(() => principalForLogin(auth, creds, now));
  if (principal === null) {
    await new Promise((r) => setTimeout(r, policy.failureDelayMs));
    return { ok: false, reason: 'wrong', user: userName };
  }
  await Promise.all(ids.map((id) => auth.removeFailure(id)));
  const secret = newSecret(SECRET_KINDS.session);
  const csrf = randomText();
  const expiresAt = new Date(now.getTime() + policy.sessionTtlSeconds * 1000).toISOString();
  await auth.createSession(
    {
      id: secret.id,
      user: principal.user,
      role: principal.role,
      secret_sha256: secret.sha256,
      csrf,
      created_at: now.toISOString(),
      expires_at: expiresAt,
      ...(principal.tokenId ? { token_id: principal.tokenId } : {}),
    },
    policy.sessionTtlSeconds,
  );
  return { ok: true, session: { principal: { ...principal, via: 'session', csrf, sessionId: secret.id }, cookie: secret.text, csrf, expiresAt } };
}

/** A request without valid credentials. The sentence never says which part was wrong. */
export function unauthorized(): DroverError {
  return new DroverError('UNAUTHORIZED', 'Valid credentials are needed: send Authorization: Bearer <token>, or log in.');
}
