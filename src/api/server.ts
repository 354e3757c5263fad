/**
 * The HTTP API (docs/api.md): Fastify with zod-typed routes, one module per
 * resource under routes/, authentication in one hook (auth-hook.ts), the
 * privilege each route needs declared on the route and in the OpenAPI
 * document served at /api/v1/openapi.json. It imports the contract, the
 * store, the auth rules and the VM operations; never the agent.
 */
import fastifyCookie from '@fastify/cookie';
import fastifySwagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, validatorCompiler } from 'fastify-type-provider-zod';
import { registerAuthHook } from './auth-hook.js';
import type { ApiDeps } from './context.js';
import { FieldError, handleError } from './errors.js';
import { open } from './route-options.js';
import { registerCatalogRoutes } from './routes/catalog.js';
import { registerEventRoutes } from './routes/events.js';
import { registerHealthRoute } from './routes/health.js';
import { registerHostRoutes } from './routes/hosts.js';
import { registerLoginRoutes } from './routes/login.js';
import { registerWebApp } from './routes/web-app.js';
import { registerStatsRoutes } from './routes/stats.js';
import { registerUserRoutes } from './routes/users.js';
import { registerVmActionRoutes } from './routes/vm-actions.js';
import { registerVmRoutes } from './routes/vms.js';
import { registerVmSnapshotRoutes } from './routes/vm-snapshots.js';
import { registerVmBackupRoutes } from './routes/vm-backups.js';
import { registerConsoleRoutes } from './routes/consoles.js';
import fastifyWebsocket from '@fastify/websocket';

/** Bodies are small JSON documents; anything larger is refused with 413. */
export const BODY_LIMIT = 256 * 1024;

/** No record needs more; a deeper body could overflow a recursive merge or JSON.stringify later. */
export const MAX_BODY_DEPTH = 32;

function refuseDeepBodies(body: unknown): void {
  let level: unknown[] = [body];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > MAX_BODY_DEPTH) throw new FieldError('body', `The body is nested more than ${MAX_BODY_DEPTH} levels deep.`);
    const next: unknown[] = [];
    for (const v of level) if (typeof v === 'object' && v !== null) next.push(...Object.values(v as Record<string, unknown>));
    level = next;
  }
}

export async function buildApi(deps: ApiDeps, opts: { https?: { cert: Buffer; key: Buffer } } = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT, ...(opts.https ? { https: opts.https } : {}) }) as unknown as FastifyInstance;
  app.setValidatorCompiler(validatorCompiler);
  // Responses are JSON.stringify'd (schemas.ts `documents`): records are shown as stored.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // A JSON merge patch is JSON.
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
  app.setErrorHandler(handleError(deps.logger));
  app.addHook('preValidation', async (req) => refuseDeepBodies(req.body));
  await app.register(fastifyCookie);
  // Console relays: a bounded frame size (a VNC client sends small messages); no compression (a VNC stream is already compact).
  await app.register(fastifyWebsocket, { options: { maxPayload: 1024 * 1024, perMessageDeflate: false, handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : false) } });
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'drover API', version: 'v1', description: 'The VM fleet manager\'s HTTP API (docs/api.md). Every route but login, this document and /healthz needs credentials; each route names the privilege it needs (x-drover-privilege).' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API token: drover token create, or POST /api/v1/tokens.' },
          session: { type: 'apiKey', in: 'cookie', name: 'drover_session', description: 'The web session from POST /api/v1/login; state-changing calls also need X-CSRF-Token.' },
        },
      },
    },
    transform: jsonSchemaTransform,
  });
  registerAuthHook(app, deps);
  app.get('/api/v1/openapi.json', { ...open({ summary: 'This OpenAPI document', tags: ['system'] }), schema: { hide: true } }, async () => app.swagger());
  registerHealthRoute(app, deps);
  registerLoginRoutes(app, deps);
  registerVmRoutes(app, deps);
  registerVmActionRoutes(app, deps);
  registerVmSnapshotRoutes(app, deps);
  registerVmBackupRoutes(app, deps);
  registerConsoleRoutes(app, deps);
  registerEventRoutes(app, deps);
  registerHostRoutes(app, deps);
  registerStatsRoutes(app, deps);
  registerCatalogRoutes(app, deps);
  registerUserRoutes(app, deps);
  await registerWebApp(app);
  return app;
}
