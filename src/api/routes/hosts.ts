/** GET /api/v1/hosts and /hosts/{name}: host records with their lease-aware status (Host.Audit). */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DroverError } from '../../lib/errors.js';
import type { StoredHost } from '../../store/host-repository.js';
import { HOST_NAME_RE } from '../../contract/vm-record.js';
import { setHostDrained } from '../../vm-ops/host-drain.js';
import { audit } from '../audit.js';
import { principalOf, type ApiDeps } from '../context.js';
import { needs } from '../route-options.js';
import { documents, errorSchema } from '../schemas.js';

const hostSchema = z.looseObject({ name: z.string(), status: z.enum(['ALIVE', 'DEAD']) }).meta({ id: 'Host', description: 'A host record (CONTRACT.md section 4); status is ALIVE only while its agent holds its lease.' });

function hostView(h: StoredHost): Record<string, unknown> {
  return { ...(h.record ?? {}), name: h.name, status: h.status };
}

export function registerHostRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const listDoc = needs('Host.Audit', { summary: 'List hosts', tags: ['hosts'] });
  r.get('/api/v1/hosts', {
    ...listDoc,
    schema: { ...listDoc.schema, response: { 200: documents(z.object({ items: z.array(hostSchema) })), 403: documents(errorSchema) } },
    handler: async () => ({ items: (await deps.store.hosts.list()).sort((a, b) => a.name.localeCompare(b.name)).map(hostView) }),
  });
  const getDoc = needs('Host.Audit', { summary: 'Get one host', tags: ['hosts'] });
  r.get('/api/v1/hosts/:name', {
    ...getDoc,
    schema: { ...getDoc.schema, params: z.object({ name: z.string().max(256) }), response: { 200: documents(hostSchema), 404: documents(errorSchema) } },
    handler: async (req) => {
      const host = (await deps.store.hosts.list()).find((h) => h.name === req.params.name);
      if (!host) throw new DroverError('NOT_FOUND', `There is no host ${req.params.name}.`);
      return hostView(host);
    },
  });
  for (const drained of [true, false]) {
    const what = drained ? 'drain' : 'undrain';
    const doc = needs('Host.Modify', { summary: drained ? 'Drain a host: the scheduler places no new VM there (its VMs stay; drover host drain --move moves them)' : 'Let the scheduler place VMs on a drained host again', tags: ['hosts'] });
    r.post(`/api/v1/hosts/:name/${what}`, {
      ...doc,
      schema: { ...doc.schema, params: z.object({ name: z.string().regex(HOST_NAME_RE, 'must be a host name') }), response: { 200: documents(hostSchema), 404: documents(errorSchema) } },
      handler: async (req) => {
        const principal = principalOf(req);
        if (await setHostDrained(deps.store, req.params.name, drained)) {
          await audit(deps, principal, { event: 'host.drained', message: `${principal.user} ${drained ? 'drained' : 'undrained'} host ${req.params.name}.` });
        }
        const host = (await deps.store.hosts.list()).find((h) => h.name === req.params.name);
        if (!host) throw new DroverError('NOT_FOUND', `There is no host ${req.params.name}.`);
        return hostView(host);
      },
    });
  }
}
