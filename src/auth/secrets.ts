/**
 * Secrets: API tokens, session cookies and login links are `<kind>_<id>_<secret>`
 * where the id (64 random bits, hex) names the stored record and the secret
 * (256 random bits, base64url) is kept only as its sha256. A secret of 256
 * random bits needs no slow hash; a password does: scrypt from Node's crypto.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { PasswordHash } from '../contract/auth-records.js';

export type SecretKind = 'drt' | 'drs' | 'drl' | 'drc';
/** API token, web session, one-time login link, console ticket. */
export const SECRET_KINDS: Readonly<Record<'token' | 'session' | 'link' | 'ticket', SecretKind>> = { token: 'drt', session: 'drs', link: 'drl', ticket: 'drc' };

export interface NewSecret {
  id: string;
  /** The whole string handed to the user once: `<kind>_<id>_<secret>`. */
  text: string;
  sha256: string;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** 256 random bits, base64url: a CSRF token. */
export function randomText(): string {
  return randomBytes(32).toString('base64url');
}

export function newSecret(kind: SecretKind): NewSecret {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, text: `${kind}_${id}_${secret}`, sha256: sha256Hex(secret) };
}

/** Splits a presented secret; null when it is not of that kind's shape. */
export function parseSecret(kind: SecretKind, text: string): { id: string; secret: string } | null {
  const m = /^([a-z]{3})_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(text.trim());
  if (!m || m[1] !== kind) return null;
  return { id: m[2] as string, secret: m[3] as string };
}

/** Compares a presented secret with a stored sha256 in constant time. */
export function secretMatches(secret: string, storedSha256: string): boolean {
  const a = Buffer.from(sha256Hex(secret), 'hex');
  const b = Buffer.from(storedSha256, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

// OWASP's scrypt floor is N=2^17, r=8, p=1 (128 MiB); that many MiB per login
// attempt is what makes guessing expensive, and what a 2-core API can afford.
const SCRYPT = { N: 1 << 17, r: 8, p: 1 } as const;
const KEY_LEN = 32;

function scryptAsync(password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEY_LEN, { ...opts, maxmem: 256 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export async function hashPassword(password: string): Promise<PasswordHash> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return { scheme: 'scrypt', ...SCRYPT, salt: salt.toString('base64'), hash: key.toString('base64') };
}

export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const key = await scryptAsync(password, Buffer.from(stored.salt, 'base64'), { N: stored.N, r: stored.r, p: stored.p });
  const want = Buffer.from(stored.hash, 'base64');
  return key.length === want.length && timingSafeEqual(key, want);
}

/** A hash nobody's password matches: checked against for unknown users, so a miss costs the same time as a wrong password. */
let decoy: Promise<PasswordHash> | null = null;
export function decoyHash(): Promise<PasswordHash> {
  decoy ??= hashPassword(randomBytes(24).toString('base64'));
  return decoy;
}

export const MIN_PASSWORD_LENGTH = 8;
