/**
 * POST /api/v1/vms/{id}/start|stop|restart: the CLI's status changes
 * (vm-ops/change-status.ts), each a compare-and-swap write of a request
 * status. 202 with the record when a request was written, 200 when the VM
 * is already there or on its way (nothing written); `?wait=STATUS` answers
 * once it gets there.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Privilege } from '../../auth/privileges.js';
import { changeStatus } from '../../vm-ops/change-status.js';
import type { VmAction } from '../../vm-ops/status-plan.js';
import { audit } from '../audit.js';
import { principalOf, type ApiDeps } from '../context.js';
import { needs } from '../route-options.js';
import { documents, errorSchema, stopBody, vmIdParams, vmSchema, waitQuery } from '../schemas.js';
import { ownerGuard, VmAccess } from '../vm-access.js';
import { sendVm } from './vms.js';

const ACTIONS: readonly { action: Exclude<VmAction, 'delete'>; privilege: Privilege; summary: string }[] = [
  { action: 'start', privilege: 'VM.PowerMgmt', summary: 'Start a VM (REQUESTED_START)' },
  { action: 'stop', privilege: 'VM.PowerMgmt', summary: 'Stop a VM (TO_STOP): ACPI power-down, forced after its stop timeout; {"force": true} forces at once' },
  { action: 'restart', privilege: 'VM.PowerMgmt', summary: 'Restart a VM (REQUESTED_RESTART)' },
];

export function registerVmActionRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const access = new VmAccess(deps.store, deps.vmIndex);
  const r = app.withTypeProvider<ZodTypeProvider>();
  for (const { action, privilege, summary } of ACTIONS) {
    const doc = needs(privilege, { summary, tags: ['vms'] });
    r.post(`/api/v1/vms/:id/${action}`, {
      ...doc,
      schema: {
        ...doc.schema,
        params: vmIdParams,
        querystring: waitQuery,
        body: stopBody,
        response: { 200: documents(vmSchema), 202: documents(vmSchema), 404: documents(errorSchema), 409: documents(errorSchema), 504: documents(errorSchema) },
      },
      handler: async (req, reply) => {
        const principal = principalOf(req);
        const vm = await access.get(principal, req.params.id);
        const wait = req.query.wait;
        const result = await changeStatus(deps.store, {
          action,
          ref: vm.uuid,
          force: action === 'stop' && req.body?.force === true,
          waitSeconds: wait ? Math.min(req.query.timeout, deps.settings.maxWaitSeconds) : null,
          goal: wait,
          onProgress: () => undefined,
          authorize: ownerGuard(principal, req.params.id),
        });
        await deps.vmIndex.caughtUp(result.revision);
        if (result.plan.kind === 'write') {
          const owner = typeof result.record?.owner === 'string' ? result.record.owner : undefined;
          await audit(deps, principal, {
            event: 'vm.requested',
            vm: vm.uuid,
            owner,
            revision: result.revision ?? undefined,
            fields: ['status'],
            message: `${principal.user} asked to ${action} VM ${result.label}${result.plan.forceStop ? ' (forced)' : ''}.`,
          });
        }
        const record = result.record ?? { uuid: vm.uuid };
        return sendVm(reply, result.plan.kind === 'write' && !wait ? 202 : 200, record, wait ? undefined : (result.revision ?? undefined));
      },
    });
  }
}
