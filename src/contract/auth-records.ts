/**
 * Users, API tokens, web sessions and one-time login links, under `P/auth/`
 * (CONTRACT.md section 7; docs/security.md). Secrets are never stored: a
 * password as its scrypt hash, a token, session or link as the sha256 of its
 * 256-bit random secret.
 */
import { z } from 'zod';

import { ROLES, type Role } from './roles.js';

export { ROLES, type Role };

/** A user name: what `owner` holds in VM records. */
export const USER_NAME_RE = /^[a-z][a-z0-9_.-]{0,62}$/;
/** The public half of a token, session or link: 16 hex characters. */
export const SECRET_ID_RE = /^[0-9a-f]{16}$/;

export const userNameSchema = z.string().regex(USER_NAME_RE, 'must be a user name: a lower-case letter, then up to 62 of a-z 0-9 _ . -');
export const roleSchema = z.enum(ROLES);

export const passwordHashSchema = z.object({
  scheme: z.literal('scrypt'),
  /** scrypt's cost parameters, so they can be raised later without breaking old hashes. */
  N: z.int().positive(),
  r: z.int().positive(),
  p: z.int().positive(),
  salt: z.string(),
  hash: z.string(),
});
export type PasswordHash = z.infer<typeof passwordHashSchema>;

export const userRecordSchema = z.looseObject({
  name: userNameSchema,
  role: roleSchema,
  /** Absent: the user logs in only with tokens. */
  password: passwordHashSchema.optional(),
  created_at: z.string(),
  created_by: z.string().optional(),
});
export type UserRecord = z.infer<typeof userRecordSchema>;

export const tokenRecordSchema = z.looseObject({
  id: z.string().regex(SECRET_ID_RE),
  user: userNameSchema,
  /** At most the user's role; the lower of the two applies on every request. */
  role: roleSchema,
  secret_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  created_at: z.string(),
  expires_at: z.string().optional(),
  description: z.string().max(200).optional(),
  /** The token this one was made with (POST /api/v1/tokens): revoking that one revokes this one too. */
  parent_id: z.string().regex(SECRET_ID_RE).optional(),
});
export type TokenRecord = z.infer<typeof tokenRecordSchema>;

/** A web session (the dashboard's cookie), under a lease as long as its life. */
export const sessionRecordSchema = z.looseObject({
  id: z.string().regex(SECRET_ID_RE),
  user: userNameSchema,
  role: roleSchema,
  secret_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** The CSRF token state-changing calls with this cookie must send in `X-CSRF-Token`. */
  csrf: z.string().min(32),
  created_at: z.string(),
  expires_at: z.string(),
  /** The API token the session was opened with, if any: revoking it ends the session. */
  token_id: z.string().optional(),
});
export type SessionRecord = z.infer<typeof sessionRecordSchema>;

/** A one-time login link (`drover up`): used once, then deleted; under a short lease. */
export const loginLinkSchema = z.looseObject({
  id: z.string().regex(SECRET_ID_RE),
  user: userNameSchema,
  secret_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  expires_at: z.string(),
});
export type LoginLink = z.infer<typeof loginLinkSchema>;

/** Which console a ticket opens: the VM's screen (VNC) or its serial line. */
export const CONSOLE_KINDS = ['vnc', 'serial'] as const;
export type ConsoleKind = (typeof CONSOLE_KINDS)[number];

/** A console ticket (docs/consoles.md): one user, one VM, one kind; used once, within 30 s. */
export const consoleTicketSchema = z.looseObject({
  id: z.string().regex(SECRET_ID_RE),
  user: userNameSchema,
  vm: z.string(),
  kind: z.enum(CONSOLE_KINDS),
  secret_sha256: z.string().regex(/^[0-9a-f]{64}$/),
  expires_at: z.string(),
});
export type ConsoleTicket = z.infer<typeof consoleTicketSchema>;

/** Parses a stored auth value; null when it is not valid (a hand-edited key is never trusted). */
export function parseAuthRecord<T>(schema: z.ZodType<T>, raw: string): T | null {
  try {
    const r = schema.safeParse(JSON.parse(raw));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
