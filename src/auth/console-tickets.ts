/**
 * Console tickets (docs/consoles.md): a browser cannot put a token on a
 * websocket, so `POST /vms/{id}/console` hands the signed-in caller a ticket
 * that opens that one console once: `drc_<id>_<secret>` (256 random bits,
 * only its sha256 stored), bound to the user, the VM and the console kind,
 * valid 30 s. Redeeming takes the stored record with a compare-and-swap
 * delete, so of several API processes exactly one accepts it, and a ticket
 * presented twice, late, for another VM or kind, or forged opens nothing.
 */
import type { ConsoleKind } from '../contract/auth-records.js';
import type { AuthRepository } from '../store/auth-repository.js';
import { newSecret, parseSecret, secretMatches, SECRET_KINDS } from './secrets.js';

export const TICKET_TTL_SECONDS = 30;

export interface TicketScope {
  user: string;
  vm: string;
  kind: ConsoleKind;
}

/** A ticket for `scope`; with `forHost`, one that only that host's agent redeems (the API's hop to a console on another machine). */
export async function issueTicket(auth: AuthRepository, scope: TicketScope, now: Date, forHost?: string): Promise<string> {
  const secret = newSecret(SECRET_KINDS.ticket);
  await auth.createTicket({ id: secret.id, ...scope, secret_sha256: secret.sha256, expires_at: new Date(now.getTime() + TICKET_TTL_SECONDS * 1000).toISOString() }, TICKET_TTL_SECONDS, forHost);
  return secret.text;
}

/** The user the ticket was issued to, when it is genuine, unused, unexpired and for this VM and kind; null otherwise (and it is used up either way). */
export async function redeemTicket(auth: AuthRepository, text: string, want: { vm: string; kind: ConsoleKind; host?: string }, now: Date): Promise<string | null> {
  const parsed = parseSecret(SECRET_KINDS.ticket, text);
  if (!parsed) return null;
  const stored = await auth.takeTicket(parsed.id, want.host);
  if (!stored || !secretMatches(parsed.secret, stored.secret_sha256)) return null;
  if (Date.parse(stored.expires_at) <= now.getTime() || stored.vm !== want.vm || stored.kind !== want.kind) return null;
  return stored.user;
}
