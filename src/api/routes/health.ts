/** GET /healthz (no credentials): whether this API process reaches etcd. */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorMessage } from '../../lib/errors.js';
import type { ApiDeps } from '../context.js';
import { open } from '../route-options.js';
import { documents } from '../schemas.js';

export function registerHealthRoute(app: FastifyInstance, deps: ApiDeps): void {
  const doc = open({ summary: 'Health: 200 when etcd answers, 503 when not', tags: ['system'] });
  app.withTypeProvider<ZodTypeProvider>().get('/healthz', {
    ...doc,
    schema: { ...doc.schema, response: { 200: documents(z.object({ ok: z.boolean(), etcd: z.string() })), 503: documents(z.object({ ok: z.boolean(), etcd: z.string() })) } },
    handler: async (_req, reply) => {
      try {
        await deps.store.kv.get(deps.store.keys.config('image_store'));
        return { ok: true, etcd: 'reachable' };
      } catch (err) {
        return reply.code(503).send({ ok: false, etcd: errorMessage(err) });
      }
    },
  });
}
