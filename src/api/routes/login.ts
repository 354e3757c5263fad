/**
 * POST /api/v1/login (public), POST /api/v1/logout, GET /api/v1/session.
 * A login with a user name and password, an API token or a one-time login
 * link opens a web session: an HttpOnly, SameSite=Strict cookie (Secure
 * under TLS) plus a CSRF token for state-changing calls. A failure never
 * says whether the user exists; failures are slowed, counted per user and
 * per address in etcd, refused past the limit (429) and logged as events.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { login } from '../../auth/authenticate.js';
import { DroverError } from '../../lib/errors.js';
import { audit } from '../audit.js';
import { SESSION_COOKIE } from '../auth-hook.js';
import { principalOf, type ApiDeps } from '../context.js';
import { authenticated, open } from '../route-options.js';
import { documents, errorSchema } from '../schemas.js';

const loginBody = z.union([
  z.strictObject({ user: z.string().min(1).max(256), password: z.string().min(1).max(4096) }),
  z.strictObject({ token: z.string().min(1).max(512).describe('An API token (drt_...) or a one-time login link\'s token (drl_..., from the URL fragment #login=).') }),
]);

const sessionSchema = z.object({
  user: z.string(),
  role: z.string(),
  via: z.enum(['token', 'session']),
  csrf_token: z.string().optional().describe('Send it as X-CSRF-Token on every state-changing call made with the session cookie.'),
  expires_at: z.string().optional(),
});

export function registerLoginRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const loginDoc = open({ summary: 'Log in: open a web session (cookie) with a password, an API token or a one-time login link', tags: ['auth'] });
  r.post('/api/v1/login', {
    ...loginDoc,
    schema: { ...loginDoc.schema, body: loginBody, response: { 200: documents(sessionSchema), 401: documents(errorSchema), 429: documents(errorSchema) } },
    handler: async (req, reply) => {
      const outcome = await login(deps.store.auth, req.body, req.ip, deps.now(), deps.settings.login);
      if (!outcome.ok) {
        const who = outcome.user !== undefined ? ` as ${JSON.stringify(outcome.user.slice(0, 64))}` : ' with a token';
        // Each checked failure is logged; of the refusals only the first of a window, so a flood of them writes nothing.
        if (outcome.reason === 'wrong' || outcome.firstRefusal) {
          await audit(deps, null, { event: 'auth.login_failed', level: 'warn', message: `A login${who} from ${req.ip} failed${outcome.reason === 'throttled' ? ': too many attempts, further ones are refused unchecked for a while' : ''}.` });
        }
        if (outcome.reason === 'throttled') {
          void reply.header('Retry-After', String(outcome.retryAfterSeconds ?? 60));
          return reply.code(429).send({ error: 'Too many failed logins from this address or for this user; wait and try again.' });
        }
        return reply.code(401).send({ error: 'The user name and password, or the token, are not valid.' });
      }
      const { session } = outcome;
      await audit(deps, session.principal, { event: 'auth.login', message: `${session.principal.user} logged in from ${req.ip}.` });
      void reply.setCookie(SESSION_COOKIE, session.cookie, {
        httpOnly: true,
        sameSite: 'strict',
        secure: deps.settings.tls,
        path: '/',
        expires: new Date(session.expiresAt),
      });
      return { user: session.principal.user, role: session.principal.role, via: 'session' as const, csrf_token: session.csrf, expires_at: session.expiresAt };
    },
  });

  const logoutDoc = authenticated({ summary: 'Log out: end this web session', tags: ['auth'] });
  r.post('/api/v1/logout', {
    ...logoutDoc,
    schema: { ...logoutDoc.schema, response: { 200: documents(z.object({ ok: z.literal(true) })) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      if (principal.sessionId === undefined) throw new DroverError('USAGE', 'Logout ends a web session; this call was made with a token (revoke it with DELETE /api/v1/tokens/{id}).');
      await deps.store.auth.deleteSession(principal.sessionId);
      await audit(deps, principal, { event: 'auth.logout', message: `${principal.user} logged out.` });
      void reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return { ok: true as const };
    },
  });

  const sessionDoc = authenticated({ summary: 'Who am I: the caller, its role and (with a session cookie) its CSRF token', tags: ['auth'] });
  r.get('/api/v1/session', {
    ...sessionDoc,
    schema: { ...sessionDoc.schema, response: { 200: documents(sessionSchema) } },
    handler: async (req) => {
      const p = principalOf(req);
      return { user: p.user, role: p.role, via: p.via, ...(p.csrf ? { csrf_token: p.csrf } : {}) };
    },
  });
}
