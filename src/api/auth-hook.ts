/**
 * Authentication is one `onRequest` hook, authorization one check of the
 * privilege the route declares (STYLE.md 13): no handler can forget either.
 * A bearer token wins over the session cookie; a cookie-authenticated call
 * that changes state must also carry the session's CSRF token in
 * `X-CSRF-Token` (a cross-site form cannot read it, so cannot send it).
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {} from '@fastify/cookie';
import { authenticateSession, authenticateToken, unauthorized, type Principal } from '../auth/authenticate.js';
import { hasPrivilege } from '../auth/privileges.js';
import { DroverError } from '../lib/errors.js';
import type { ApiDeps } from './context.js';

export const SESSION_COOKIE = 'drover_session';
export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The principal of the request's credentials, or null. A malformed header counts as no credentials. */
export async function credentialsOf(req: FastifyRequest, deps: ApiDeps): Promise<Principal | null> {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m ? authenticateToken(deps.store.auth, m[1] as string, deps.now()) : null;
  }
  const cookie = req.cookies?.[SESSION_COOKIE];
  return cookie ? authenticateSession(deps.store.auth, cookie, deps.now()) : null;
}

export function registerAuthHook(app: FastifyInstance, deps: ApiDeps): void {
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req) => {
    const config = req.routeOptions.config;
    if (config.public) return;
    const principal = await credentialsOf(req, deps);
    if (!principal) throw unauthorized();
    if (principal.via === 'session' && !SAFE_METHODS.has(req.method)) {
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !principal.csrf || !sameText(sent, principal.csrf)) {
        throw new DroverError('FORBIDDEN', `This call changes state and was made with the session cookie, so it needs the session's CSRF token in ${CSRF_HEADER}.`);
      }
    }
    req.principal = principal;
    const privilege = config.privilege;
    if (privilege && !hasPrivilege(principal.role, privilege)) {
      throw new DroverError('FORBIDDEN', `The role ${principal.role} of ${principal.user} lacks the privilege ${privilege} that this call needs.`);
    }
  });
}
