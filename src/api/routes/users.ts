/**
 * /api/v1/users (User.Modify; listing also Sys.Audit) and /api/v1/tokens:
 * any caller lists, creates and revokes its own tokens; User.Modify does so
 * for anyone. A token is shown once, in the answer that creates it.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { addUser, createToken, deleteUser, tokenView, userView } from '../../auth/accounts.js';
import { hasPrivilege, roleWithin } from '../../auth/privileges.js';
import { roleSchema, userNameSchema } from '../../contract/auth-records.js';
import { parseDuration } from '../../lib/duration.js';
import { DroverError } from '../../lib/errors.js';
import { audit } from '../audit.js';
import { principalOf, type ApiDeps } from '../context.js';
import { FieldError } from '../errors.js';
import { authenticated, needs } from '../route-options.js';
import { documents, errorSchema } from '../schemas.js';

const userSchema = z.object({ name: z.string(), role: roleSchema, has_password: z.boolean(), created_at: z.string() }).meta({ id: 'User' });
const tokenSchema = z.object({ id: z.string(), user: z.string(), role: roleSchema, created_at: z.string(), expires_at: z.string().optional(), expired: z.boolean() }).meta({ id: 'Token' });

export function registerUserRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const auth = deps.store.auth;

  const listDoc = needs('Sys.Audit', { summary: 'List users', tags: ['users'] });
  r.get('/api/v1/users', {
    ...listDoc,
    schema: { ...listDoc.schema, response: { 200: documents(z.object({ items: z.array(userSchema) })) } },
    handler: async () => ({ items: (await auth.listUsers()).map(userView) }),
  });

  const addDoc = needs('User.Modify', { summary: 'Add a user', tags: ['users'] });
  r.post('/api/v1/users', {
    ...addDoc,
    schema: { ...addDoc.schema, body: z.strictObject({ name: userNameSchema, role: roleSchema, password: z.string().min(8).max(4096).optional() }), response: { 201: documents(userSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const user = await addUser(auth, { ...req.body, createdBy: p.user, now: deps.now() });
      await audit(deps, p, { event: 'user.added', message: `${p.user} added user ${user.name} (${user.role}).` });
      return reply.code(201).send(user);
    },
  });

  const delDoc = needs('User.Modify', { summary: 'Delete a user with its tokens and sessions', tags: ['users'] });
  r.delete('/api/v1/users/:name', {
    ...delDoc,
    schema: { ...delDoc.schema, params: z.object({ name: z.string().max(256) }), response: { 200: documents(z.object({ name: z.string(), deleted: z.literal(true) })), 404: documents(errorSchema) } },
    handler: async (req) => {
      const p = principalOf(req);
      await deleteUser(auth, req.params.name);
      await audit(deps, p, { event: 'user.deleted', message: `${p.user} deleted user ${req.params.name}.` });
      return { name: req.params.name, deleted: true as const };
    },
  });

  const tokensDoc = authenticated({ summary: "List tokens: one's own; everyone's with User.Modify", tags: ['tokens'] });
  r.get('/api/v1/tokens', {
    ...tokensDoc,
    schema: { ...tokensDoc.schema, response: { 200: documents(z.object({ items: z.array(tokenSchema) })) } },
    handler: async (req) => {
      const p = principalOf(req);
      const mine = hasPrivilege(p.role, 'User.Modify') ? undefined : p.user;
      const now = deps.now();
      return { items: (await auth.listTokens(mine)).map((t) => tokenView(t, now)) };
    },
  });

  const createDoc = authenticated({ summary: "Create a token (shown once): one's own; anyone's with User.Modify; its role no higher than its user's nor the caller's", tags: ['tokens'] });
  r.post('/api/v1/tokens', {
    ...createDoc,
    schema: {
      ...createDoc.schema,
      body: z.strictObject({ user: userNameSchema.optional(), role: roleSchema.optional(), expires: z.string().max(32).optional().describe('90s, 10m, 12h, 30d'), description: z.string().max(200).optional() }),
      response: { 201: documents(tokenSchema.extend({ token: z.string() })), 403: documents(errorSchema) },
    },
    handler: async (req, reply) => {
      const p = principalOf(req);
      const user = req.body.user ?? p.user;
      if (user !== p.user && !hasPrivilege(p.role, 'User.Modify')) throw new FieldError('user', `Only an admin may create tokens for another user.`, 'FORBIDDEN');
      const role = req.body.role ?? (user === p.user ? p.role : undefined);
      if (user === p.user && role !== undefined && !roleWithin(role, p.role)) {
        throw new FieldError('role', `A token may not have a role above the one this call is made with (${p.role}).`, 'FORBIDDEN');
      }
      let expiresIn: number | undefined;
      if (req.body.expires !== undefined) {
        const s = parseDuration(req.body.expires);
        if (s === null || s <= 0) throw new FieldError('expires', 'Field expires must be a duration such as 90s, 10m, 12h or 30d.');
        expiresIn = s;
      }
      // A token made with a token expires no later than it and goes when it is revoked.
      const parent = p.tokenId !== undefined ? ((await auth.getToken(p.tokenId)) ?? undefined) : undefined;
      const created = await createToken(auth, { user, role, expiresIn, description: req.body.description, parent, now: deps.now() });
      await audit(deps, p, { event: 'token.created', message: `${p.user} created token ${created.id} for ${created.user} (${created.role}).` });
      return reply.code(201).send(created);
    },
  });

  const revokeDoc = authenticated({ summary: "Revoke a token: one's own; anyone's with User.Modify", tags: ['tokens'] });
  r.delete('/api/v1/tokens/:id', {
    ...revokeDoc,
    schema: { ...revokeDoc.schema, params: z.object({ id: z.string().max(64) }), response: { 200: documents(z.object({ id: z.string(), revoked: z.literal(true) })), 404: documents(errorSchema) } },
    handler: async (req) => {
      const p = principalOf(req);
      const token = await auth.getToken(req.params.id);
      // Another user's token is "not found", like another user's VM.
      if (!token || (token.user !== p.user && !hasPrivilege(p.role, 'User.Modify'))) throw new DroverError('NOT_FOUND', `There is no token ${req.params.id}.`);
      await auth.revokeToken(token.id);
      await audit(deps, p, { event: 'token.revoked', message: `${p.user} revoked token ${token.id} of ${token.user}.` });
      return { id: token.id, revoked: true as const };
    },
  });
}
