/**
 * The VM consoles in the browser (docs/consoles.md): `POST
 * /vms/{id}/console` (VNC) or `/vms/{id}/serial` (VM.Console) hands out a
 * single-use 30 s ticket for that VM, that console and the caller; `GET` of
 * the same path with `?ticket=` upgrades to a websocket joined to the VM's
 * socket (console-relay.ts). Everything is checked in `preValidation`,
 * before the upgrade: a missing, reused, expired, forged or foreign ticket,
 * a user who may no longer use the console, or an `Origin` other than the
 * API's own gets a plain HTTP refusal and never a byte of the VM's stream.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { issueTicket, redeemTicket, TICKET_TTL_SECONDS } from '../../auth/console-tickets.js';
import { hasPrivilege } from '../../auth/privileges.js';
import type { Principal } from '../../auth/authenticate.js';
import type { ConsoleKind } from '../../contract/auth-records.js';
import { DroverError } from '../../lib/errors.js';
import { audit } from '../audit.js';
import { consoleRoute, openConsole, type ConsoleRoute } from '../console-channel.js';
import { relay } from '../console-relay.js';
import { principalOf, type ApiDeps } from '../context.js';
import { needs, open } from '../route-options.js';
import { documents, errorSchema, vmIdParams } from '../schemas.js';
import { ownerOf, VmAccess } from '../vm-access.js';

const TAGS = ['consoles'];
const PATHS: Readonly<Record<ConsoleKind, string>> = { vnc: 'console', serial: 'serial' };
const ticketAnswer = z.object({
  ticket: z.string().describe(`Single use, valid ${TICKET_TTL_SECONDS} s, for this VM, this console and the caller.`),
  path: z.string().describe('GET it with ?ticket= as a websocket.'),
  expires_at: z.string(),
});

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by a console route's preValidation: what the websocket relays, for whom. */
    consoleTarget?: { route: ConsoleRoute; vm: string; user: string };
  }
}

/** Whether the request's Origin (when it sends one) is the API's own: a page elsewhere may not open a console with a ticket it stole. */
function originIsOwn(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true; // not a browser (drover vm console, scripts): the ticket alone decides
  const host = req.headers.host;
  return host !== undefined && (origin === `${req.protocol}://${host}`);
}

export function registerConsoleRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const access = new VmAccess(deps.store, deps.vmIndex);
  const r = app.withTypeProvider<ZodTypeProvider>();

  for (const kind of ['vnc', 'serial'] as const) {
    const what = kind === 'vnc' ? 'the VNC console (RFB)' : 'the serial console';
    const ticketDoc = needs('VM.Console', { summary: `A ticket for ${what} of a running VM`, tags: TAGS });
    r.post(`/api/v1/vms/:id/${PATHS[kind]}`, {
      ...ticketDoc,
      schema: { ...ticketDoc.schema, params: vmIdParams, response: { 201: documents(ticketAnswer), 404: documents(errorSchema), 409: documents(errorSchema) } },
      handler: async (req, reply) => {
        const principal = principalOf(req);
        const vm = await access.get(principal, req.params.id);
        await consoleRoute(deps, vm, kind); // says now, not at connect, when there is no console to reach
        const now = deps.now();
        const ticket = await issueTicket(deps.store.auth, { user: principal.user, vm: vm.uuid, kind }, now);
        await audit(deps, principal, { event: 'vm.requested', vm: vm.uuid, owner: ownerOf(vm), message: `${principal.user} opened ${what} of VM ${vm.uuid}.` });
        return reply.code(201).send({ ticket, path: `/api/v1/vms/${vm.uuid}/${PATHS[kind]}`, expires_at: new Date(now.getTime() + TICKET_TTL_SECONDS * 1000).toISOString() });
      },
    });

    const wsDoc = open({ summary: `Websocket to ${what}: GET with ?ticket= from the POST (the ticket is the credential)`, tags: TAGS });
    r.get(`/api/v1/vms/:id/${PATHS[kind]}`, {
      ...wsDoc,
      websocket: true,
      schema: { ...wsDoc.schema, params: z.object({ id: z.uuid() }), querystring: z.object({ ticket: z.string().max(200) }) },
      preValidation: async (req) => {
        if (!originIsOwn(req)) throw new DroverError('FORBIDDEN', 'A console opens only from the API\'s own pages (the Origin header names another site).');
        // preValidation runs before the schemas: the query is checked here.
        const { id } = req.params as { id: string };
        const { ticket } = req.query as { ticket?: unknown };
        if (typeof ticket !== 'string' || ticket === '') throw new DroverError('USAGE', 'A console websocket needs ?ticket= (POST to this path makes one).');
        const user = await redeemTicket(deps.store.auth, ticket, { vm: id, kind }, deps.now());
        if (user === null) throw new DroverError('UNAUTHORIZED', 'The console ticket is not valid: tickets work once, for 30 s, for the VM and console they were made for.');
        const record = await deps.store.auth.getUser(user);
        if (!record || !hasPrivilege(record.role, 'VM.Console')) throw new DroverError('FORBIDDEN', `User ${user} may no longer open consoles.`);
        const principal: Principal = { user: record.name, role: record.role, via: 'token' };
        const vm = await access.get(principal, id);
        req.consoleTarget = { route: await consoleRoute(deps, vm, kind), vm: vm.uuid, user: record.name };
      },
    }, (socket: WebSocket, req: FastifyRequest) => {
        const target = req.consoleTarget;
        if (!target) return void socket.close(1011, 'no console');
        void relay(socket, () => openConsole(deps, target.route, target.vm, kind, target.user), deps.logger);
    });
  }
}
