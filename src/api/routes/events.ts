/**
 * GET /api/v1/events: the cluster's event log (P/log/) and VM record
 * changes. As JSON: the newest events the caller may see, with the revision
 * they were read at. With `Accept: text/event-stream`: server-sent events
 * from an etcd watch, each with `id:` its etcd revision, resumable with
 * `?since=<revision>` or `Last-Event-ID` (etcd replays what happened
 * since, as long as it has not compacted it). A `user` sees only its own
 * VMs' events and changes (event-visibility.ts). The stream re-checks the
 * caller's credentials every keep-alive, and ends when they are revoked.
 *
 * GET /api/v1/vms/{id}/history: every version of one VM record (vm-history.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Principal } from '../../auth/authenticate.js';
import { DroverError, errorMessage } from '../../lib/errors.js';
import type { StoredEvent } from '../../store/event-log.js';
import type { WatchEvent } from '../../store/kv-store.js';
import { rawObject } from '../../store/vm-repository.js';
import { credentialsOf } from '../auth-hook.js';
import { principalOf, type ApiDeps } from '../context.js';
import { EventVisibility } from '../event-visibility.js';
import { needs } from '../route-options.js';
import { documents, errorSchema, vmIdParams } from '../schemas.js';
import { readVmHistory } from '../vm-history.js';
import { canSee, VmAccess } from '../vm-access.js';


const eventsQuery = z.object({
  since: z.string().regex(/^\d+$/, 'must be an etcd revision').optional().describe('Stream what happened after this revision (an earlier event id).'),
  vm: z.string().max(64).optional().describe('Only events about this VM uuid.'),
  limit: z.coerce.number().int().min(1).max(10_000).default(100).describe('JSON: at most this many of the newest events.'),
});

function toLogEvent(raw: string, id: string): StoredEvent | null {
  const obj = rawObject(raw);
  return obj ? ({ ...(obj as unknown as StoredEvent), id }) : null;
}

/** Open event streams per API process; each holds an etcd watch on the whole prefix. */
export const MAX_STREAMS = 1000;
let openStreams = 0;

export function registerEventRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  // Open streams end when the API stops (a browser would otherwise hold the server open); clients reconnect with Last-Event-ID.
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...streams]) end();
  });
  const access = new VmAccess(deps.store, deps.vmIndex);
  const doc = needs('VM.Audit', {
    summary: 'Events: JSON list, or a server-sent event stream (Accept: text/event-stream)',
    description: 'Stream messages: `event: log` (an event record, CONTRACT.md section 5) and `event: vm` ({uuid, record, revision}; record null when deleted); `id` is the etcd revision.',
    tags: ['events'],
  });
  r.get('/api/v1/events', {
    ...doc,
    schema: { ...doc.schema, querystring: eventsQuery, response: { 200: documents(z.object({ items: z.array(z.looseObject({ id: z.string() })), revision: z.string() })), 400: documents(errorSchema) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      const visibility = new EventVisibility(principal, access.visible(principal));
      const accept = req.headers.accept ?? '';
      if (accept.includes('text/event-stream')) {
        if (openStreams >= MAX_STREAMS) throw new DroverError('ETCD_UNAVAILABLE', `This API process already serves ${MAX_STREAMS} event streams; try again later or another API process.`, true);
        const lastId = req.headers['last-event-id'];
        const since = req.query.since ?? (typeof lastId === 'string' && /^\d+$/.test(lastId) ? lastId : undefined);
        return streamEvents(req, reply, deps, principal, visibility, since, req.query.vm, streams);
      }
      const { events, revision } = await deps.store.events.listWithRevision(req.query.vm ? { vm: req.query.vm } : {});
      return { items: events.filter((e) => visibility.event(e)).slice(-req.query.limit), revision };
    },
  });

  const historyDoc = needs('VM.Audit', { summary: "A VM's history: every version of its record etcd still holds, with the changed fields and who asked", tags: ['vms'] });
  r.get('/api/v1/vms/:id/history', {
    ...historyDoc,
    schema: { ...historyDoc.schema, params: vmIdParams, querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }), response: { 200: documents(z.looseObject({ uuid: z.string(), entries: z.array(z.looseObject({})), truncated: z.boolean() })), 404: documents(errorSchema) } },
    handler: async (req) => {
      const principal = principalOf(req);
      const vm = await access.get(principal, req.params.id);
      const events = await deps.store.events.list({ vm: vm.uuid });
      return readVmHistory(deps.store.kv, vm, events, req.query.limit, (record) => canSee(principal, typeof record?.owner === 'string' ? record.owner : undefined));
    },
  });
}

async function streamEvents(req: FastifyRequest, reply: FastifyReply, deps: ApiDeps, principal: Principal, visibility: EventVisibility, since: string | undefined, onlyVm: string | undefined, streams: Set<() => void>): Promise<FastifyReply> {
  const { keys, kv } = deps.store;
  const from = since ?? (await kv.list(keys.logPrefix, { limit: 1 })).revision;
  reply.hijack();
  openStreams++;
  const res = reply.raw;
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  res.write(`: drover events after revision ${from}\n\n`);
  let closed = false;
  const send = (id: string, type: string, data: unknown): void => {
    if (!closed) res.write(`id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const keepAlive = (): void => {
    if (!closed) res.write(': keep-alive\n\n');
  };
  const end = (why?: string): void => {
    if (closed) return;
    if (why) res.write(`event: error\ndata: ${JSON.stringify({ error: why })}\n\n`);
    closed = true;
    openStreams--;
    streams.delete(ending);
    clearInterval(timer);
    void watch.then((w) => w.close()).catch(() => undefined);
    res.end();
  };
  const ending = (): void => end();
  streams.add(ending);
  const forward = (w: WatchEvent): void => {
    const key = w.type === 'put' ? w.entry.key : w.key;
    const revision = w.type === 'put' ? w.entry.modRevision : w.modRevision;
    if (key.startsWith(keys.vmPrefix)) {
      const uuid = keys.idOf(key, keys.vmPrefix);
      if (onlyVm !== undefined && uuid !== onlyVm) return;
      if (w.type === 'delete') {
        if (visibility.vmDeleted(uuid)) send(revision, 'vm', { uuid, record: null, revision });
        return;
      }
      const record = rawObject(w.entry.raw);
      const owner = typeof record?.owner === 'string' ? record.owner : undefined;
      if (visibility.vmPut(uuid, owner)) send(revision, 'vm', { uuid, record: record ? { ...record, uuid } : null, revision });
      return;
    }
    if (key.startsWith(keys.logPrefix) && w.type === 'put' && w.entry.createRevision === w.entry.modRevision) {
      const ev = toLogEvent(w.entry.raw, keys.idOf(key, keys.logPrefix));
      if (ev && (onlyVm === undefined || ev.vm === onlyVm) && visibility.event(ev)) send(revision, 'log', ev);
    }
  };
  const watch = kv.watchPrefix(`${keys.prefix}/`, (BigInt(from) + 1n).toString(), {
    onEvent: (w) => {
      try {
        forward(w);
      } catch (err) {
        end(`The event stream failed on revision ${w.type === 'put' ? w.entry.modRevision : w.modRevision} (${errorMessage(err)}).`);
      }
    },
    onBroken: (reason) => end(`The event stream broke (${reason}); list again and resume from the revision the list gives.`),
  });
  watch.catch((err: unknown) => end(`Could not watch etcd: ${errorMessage(err)}.`));
  const timer = setInterval(() => {
    // Revoked credentials end the stream within one keep-alive.
    // A changed role (a demotion) ends the stream too: what it may see was decided at the start.
    void credentialsOf(req, deps).then(
      (p) => (p && p.user === principal.user && p.role === principal.role ? keepAlive() : end('The credentials of this stream are no longer valid.')),
      keepAlive,
    );
  }, deps.settings.streamRecheckMs);
  res.on('close', () => end());
  return reply;
}
