/**
 * Stats history for charts (stats-history.ts): GET /api/v1/hosts/{name}/stats
 * (Host.Audit) and GET /api/v1/vms/{id}/stats (VM.Audit, owner-scoped),
 * oldest point first, from the host's `P/stats/<host>` revisions in etcd.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { HOST_NAME_RE } from '../../contract/vm-record.js';
import { rawObject } from '../../store/vm-repository.js';
import { principalOf, type ApiDeps } from '../context.js';
import { needs } from '../route-options.js';
import { documents, errorSchema, vmIdParams } from '../schemas.js';
import { hostPoint, readStatsSeries, vmPoints } from '../stats-history.js';
import { VmAccess } from '../vm-access.js';

const pointsQuery = z.object({ points: z.coerce.number().int().min(1).max(720).default(60).describe('At most this many of the newest intervals.') });
const series = z.object({ points: z.array(z.looseObject({ at: z.string() })), truncated: z.boolean() });

export function registerStatsRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const access = new VmAccess(deps.store, deps.vmIndex);

  const hostDoc = needs('Host.Audit', { summary: "A host's recent figures, one point per stats interval (load, memory, storage, VM count)", tags: ['hosts'] });
  r.get('/api/v1/hosts/:name/stats', {
    ...hostDoc,
    schema: { ...hostDoc.schema, params: z.object({ name: z.string().regex(HOST_NAME_RE, 'must be a host name') }), querystring: pointsQuery, response: { 200: documents(series), 400: documents(errorSchema) } },
    handler: async (req) => {
      const s = await readStatsSeries(deps.store.kv, deps.store.keys.stats(req.params.name), req.query.points);
      return { points: s.points.map(hostPoint), truncated: s.truncated };
    },
  });

  const vmDoc = needs('VM.Audit', { summary: "A VM's recent figures from its host's reports: CPU load, memory, disk and network rates", tags: ['vms'] });
  r.get('/api/v1/vms/:id/stats', {
    ...vmDoc,
    schema: { ...vmDoc.schema, params: vmIdParams, querystring: pointsQuery, response: { 200: documents(series.extend({ host: z.string().nullable() })), 404: documents(errorSchema) } },
    handler: async (req) => {
      const vm = await access.get(principalOf(req), req.params.id);
      const host = rawObject(vm.raw)?.host;
      if (typeof host !== 'string' || !HOST_NAME_RE.test(host)) return { host: null, points: [], truncated: false };
      const s = await readStatsSeries(deps.store.kv, deps.store.keys.stats(host), req.query.points);
      return { host, points: vmPoints(s.points, vm.uuid), truncated: s.truncated };
    },
  });
}
