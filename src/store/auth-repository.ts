/**
 * The records under `P/auth/` (contract/auth-records.ts): users, API tokens,
 * web sessions, one-time login links and failed-login counters. Every read
 * goes to etcd, never to a cache, so a revoked token or a deleted user is
 * refused on the next request by every API process.
 */
import {
  loginLinkSchema,
  parseAuthRecord,
  consoleTicketSchema,
  type ConsoleTicket,
  sessionRecordSchema,
  tokenRecordSchema,
  userRecordSchema,
  type LoginLink,
  type SessionRecord,
  type TokenRecord,
  type UserRecord,
} from '../contract/auth-records.js';
import type { KeySpace } from '../contract/keys.js';
import type { z } from 'zod';
import type { KvStore } from './kv-store.js';

export class AuthRepository {
  constructor(
    private readonly kv: KvStore,
    private readonly keys: KeySpace,
  ) {}

  /** One record; null when absent or not valid (a hand-edited key is never trusted). */
  private async read<T>(key: string, schema: z.ZodType<T>): Promise<T | null> {
    const e = await this.kv.get(key);
    return e ? parseAuthRecord(schema, e.raw) : null;
  }

  /** Every valid record under a prefix. */
  private async readAll<T>(prefix: string, schema: z.ZodType<T>): Promise<T[]> {
    const { entries } = await this.kv.list(prefix);
    return entries.flatMap((e) => parseAuthRecord(schema, e.raw) ?? []);
  }

  getUser(name: string): Promise<UserRecord | null> {
    return this.read(this.keys.auth.user(name), userRecordSchema);
  }

  listUsers(): Promise<UserRecord[]> {
    return this.readAll(this.keys.auth.userPrefix, userRecordSchema);
  }

  /** false when the name is taken. */
  createUser(user: UserRecord): Promise<boolean> {
    return this.kv.putIf(this.keys.auth.user(user.name), JSON.stringify(user), 'absent');
  }

  /** Replaces a user's record (role, password) only if it is still at the revision read. */
  async updateUser(name: string, change: (u: UserRecord) => UserRecord): Promise<UserRecord | null> {
    for (let i = 0; i < 5; i++) {
      const e = await this.kv.get(this.keys.auth.user(name));
      const cur = e ? parseAuthRecord(userRecordSchema, e.raw) : null;
      if (!e || !cur) return null;
      const next = change(cur);
      if (await this.kv.putIf(e.key, JSON.stringify(next), e.modRevision)) return next;
    }
    return null;
  }

  /** Deletes the user with its tokens and sessions; false when there was no such user. */
  async deleteUser(name: string): Promise<boolean> {
    const e = await this.kv.get(this.keys.auth.user(name));
    if (!e) return false;
    // The user goes first: from that moment every token and session of it is refused.
    await this.kv.delete(e.key);
    for (const t of await this.listTokens(name)) await this.kv.delete(this.keys.auth.token(t.id));
    for (const s of await this.listSessions(name)) await this.kv.delete(this.keys.auth.session(s.id));
    return true;
  }

  getToken(id: string): Promise<TokenRecord | null> {
    return this.read(this.keys.auth.token(id), tokenRecordSchema);
  }

  async listTokens(user?: string): Promise<TokenRecord[]> {
    return (await this.readAll(this.keys.auth.tokenPrefix, tokenRecordSchema)).filter((t) => user === undefined || t.user === user);
  }

  createToken(token: TokenRecord): Promise<boolean> {
    return this.kv.putIf(this.keys.auth.token(token.id), JSON.stringify(token), 'absent');
  }

  /**
   * Deletes a token, the tokens made with it (and theirs), and the web
   * sessions opened with any of them; false when there was no such token.
   */
  async revokeToken(id: string): Promise<boolean> {
    const e = await this.kv.get(this.keys.auth.token(id));
    if (!e) return false;
    const all = await this.listTokens();
    const doomed = new Set([id]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const t of all) {
        if (t.parent_id !== undefined && doomed.has(t.parent_id) && !doomed.has(t.id)) {
          doomed.add(t.id);
          grew = true;
        }
      }
    }
    for (const t of doomed) await this.kv.delete(this.keys.auth.token(t));
    for (const s of await this.listSessions()) if (s.token_id !== undefined && doomed.has(s.token_id)) await this.kv.delete(this.keys.auth.session(s.id));
    return true;
  }

  getSession(id: string): Promise<SessionRecord | null> {
    return this.read(this.keys.auth.session(id), sessionRecordSchema);
  }

  async listSessions(user?: string): Promise<SessionRecord[]> {
    return (await this.readAll(this.keys.auth.sessionPrefix, sessionRecordSchema)).filter((s) => user === undefined || s.user === user);
  }

  /** A session key lives under its own lease, so etcd removes it when it expires. */
  async createSession(session: SessionRecord, ttlSeconds: number): Promise<void> {
    const lease = await this.kv.grantLease(ttlSeconds);
    await this.kv.putIf(this.keys.auth.session(session.id), JSON.stringify(session), 'absent', lease);
  }

  deleteSession(id: string): Promise<void> {
    return this.kv.delete(this.keys.auth.session(id));
  }

  async createLink(link: LoginLink, ttlSeconds: number): Promise<void> {
    const lease = await this.kv.grantLease(ttlSeconds);
    await this.kv.putIf(this.keys.auth.link(link.id), JSON.stringify(link), 'absent', lease);
  }

  /**
   * Takes a login link for use: reads it and deletes it with a
   * compare-and-swap, so of two requests presenting it, exactly one gets it.
   */
  takeLink(id: string): Promise<LoginLink | null> {
    return this.take(this.keys.auth.link(id), loginLinkSchema);
  }

  /**
   * A ticket for a browser is kept under P/auth/ticket/; one an API hands to
   * the agent of `host` under P/console/<host>/, the only place that
   * agent's etcd role may read (docs/security.md).
   */
  async createTicket(ticket: ConsoleTicket, ttlSeconds: number, host?: string): Promise<void> {
    const lease = await this.kv.grantLease(ttlSeconds);
    await this.kv.putIf(this.ticketKey(ticket.id, host), JSON.stringify(ticket), 'absent', lease);
  }

  /** Takes a console ticket for use, like a login link: exactly one of several API processes gets it. */
  takeTicket(id: string, host?: string): Promise<ConsoleTicket | null> {
    return this.take(this.ticketKey(id, host), consoleTicketSchema);
  }

  private ticketKey(id: string, host: string | undefined): string {
    return host === undefined ? this.keys.auth.ticket(id) : this.keys.consoleTicket(host, id);
  }

  /** Reads a single-use record and deletes it with a compare-and-swap; null when it is gone or another reader won. */
  private async take<T>(key: string, schema: z.ZodType<T>): Promise<T | null> {
    const e = await this.kv.get(key);
    if (!e) return null;
    if (!(await this.kv.deleteIf(e.key, e.modRevision))) return null;
    return parseAuthRecord(schema, e.raw);
  }

  /** Counts one more login attempt; the first one opens a window of `windowSeconds` (its lease). */
  async addFailure(id: string, windowSeconds: number): Promise<number> {
    const key = this.keys.auth.throttle(id);
    for (let i = 0; i < 10; i++) {
      const e = await this.kv.get(key);
      if (!e) {
        const lease = await this.kv.grantLease(windowSeconds);
        if (await this.kv.putIf(key, JSON.stringify({ failures: 1 }), 'absent', lease)) return 1;
        continue;
      }
      const n = Number((JSON.parse(e.raw) as { failures?: unknown }).failures) + 1;
      // The same lease: the window does not slide with each failure.
      if (await this.kv.putIf(key, JSON.stringify({ failures: n }), e.modRevision, e.lease)) return n;
    }
    // Contended past ten tries: count it as over the limit (fail closed).
    return Number.POSITIVE_INFINITY;
  }

  /** Takes back one counted attempt (it succeeded). */
  async removeFailure(id: string): Promise<void> {
    const key = this.keys.auth.throttle(id);
    for (let i = 0; i < 10; i++) {
      const e = await this.kv.get(key);
      if (!e) return;
      const n = Number((JSON.parse(e.raw) as { failures?: unknown }).failures) - 1;
      if (n <= 0 ? await this.kv.deleteIf(key, e.modRevision) : await this.kv.putIf(key, JSON.stringify({ failures: n }), e.modRevision, e.lease)) return;
    }
  }
}
