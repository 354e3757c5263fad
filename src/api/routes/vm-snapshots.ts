/**
 * A VM's snapshots (docs/snapshots.md) and its migration, through the same
 * request writes as `drover vm snapshot` and `drover vm migrate`
 * (src/vm-ops): the API writes `snapshot_request` or `migration` into the
 * record with a compare-and-swap, the VM's agent does the work. 202 with
 * the request; `?wait=true` answers once the agent reports the outcome.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Principal } from '../../auth/authenticate.js';
import type { SnapshotOp } from '../../contract/snapshot.js';
import { HOST_NAME_RE } from '../../contract/vm-record.js';
import { rawObject } from '../../store/vm-repository.js';
import { migrateVm } from '../../vm-ops/migrate-vm.js';
import { requestSnapshot } from '../../vm-ops/snapshot-vm.js';
import { audit } from '../audit.js';
import { principalOf, type ApiDeps } from '../context.js';
import { needs } from '../route-options.js';
import { documents, errorSchema, vmIdParams, vmSchema } from '../schemas.js';
import { ownerGuard, VmAccess } from '../vm-access.js';
import { sendVm } from './vms.js';

const TAGS = ['snapshots'];
const waitFlag = z.object({
  wait: z.enum(['true', 'false']).optional().describe('true: answer once the agent reports the outcome.'),
  timeout: z.coerce.number().int().min(1).max(3600).default(300),
});
const snapshotName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be a snapshot name: letters, digits, . _ -, up to 64');
const snapshotParams = vmIdParams.extend({ name: snapshotName });

const snapshotAnswer = z.object({ uuid: z.string(), request: z.looseObject({}), snapshots: z.array(z.looseObject({})) });

export function registerVmSnapshotRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const access = new VmAccess(deps.store, deps.vmIndex);
  const r = app.withTypeProvider<ZodTypeProvider>();

  const listDoc = needs('VM.Audit', { summary: "A VM's snapshots and its last snapshot request", tags: TAGS });
  r.get('/api/v1/vms/:id/snapshots', {
    ...listDoc,
    schema: { ...listDoc.schema, params: vmIdParams, response: { 200: documents(z.object({ uuid: z.string(), snapshots: z.array(z.looseObject({})), request: z.looseObject({}).nullable() })), 404: documents(errorSchema) } },
    handler: async (req) => {
      const vm = await access.get(principalOf(req), req.params.id);
      const obj = rawObject(vm.raw) ?? {};
      return { uuid: vm.uuid, snapshots: Array.isArray(obj.snapshots) ? obj.snapshots : [], request: (obj.snapshot_request as object | undefined) ?? null };
    },
  });

  const request = async (principal: Principal, id: string, wait: z.infer<typeof waitFlag>, op: SnapshotOp, name: string) => {
    const vm = await access.get(principal, id);
    const result = await requestSnapshot(deps.store, {
      op,
      ref: vm.uuid,
      name,
      waitSeconds: wait.wait === 'true' ? Math.min(wait.timeout, deps.settings.maxWaitSeconds) : null,
      onProgress: () => undefined,
      authorize: ownerGuard(principal, id),
    });
    await deps.vmIndex.caughtUp(result.revision);
    await audit(deps, principal, { event: 'vm.requested', vm: vm.uuid, owner: typeof result.record.owner === 'string' ? result.record.owner : undefined, revision: result.revision, fields: ['snapshot_request'], message: `${principal.user} asked to ${op} snapshot ${name} of VM ${result.label}.` });
    return { uuid: vm.uuid, request: result.request, snapshots: Array.isArray(result.record.snapshots) ? result.record.snapshots : [] };
  };

  const createDoc = needs('VM.Snapshot', { summary: 'Take a snapshot of every disk of a VM (running or stopped)', tags: TAGS });
  r.post('/api/v1/vms/:id/snapshots', {
    ...createDoc,
    schema: { ...createDoc.schema, params: vmIdParams, querystring: waitFlag, body: z.strictObject({ name: snapshotName }), response: { 202: documents(snapshotAnswer), 200: documents(snapshotAnswer), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => reply.code(req.query.wait === 'true' ? 200 : 202).send(await request(principalOf(req), req.params.id, req.query, 'create', req.body.name)),
  });

  const rollbackDoc = needs('VM.Snapshot', { summary: "Roll a VM's disks back to a snapshot (a running VM is stopped, rolled back and started again; newer snapshots go)", tags: TAGS });
  r.post('/api/v1/vms/:id/snapshots/:name/rollback', {
    ...rollbackDoc,
    schema: { ...rollbackDoc.schema, params: snapshotParams, querystring: waitFlag, response: { 202: documents(snapshotAnswer), 200: documents(snapshotAnswer), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => reply.code(req.query.wait === 'true' ? 200 : 202).send(await request(principalOf(req), req.params.id, req.query, 'rollback', req.params.name)),
  });

  const deleteDoc = needs('VM.Snapshot', { summary: 'Delete a snapshot from every disk of a VM', tags: TAGS });
  r.delete('/api/v1/vms/:id/snapshots/:name', {
    ...deleteDoc,
    schema: { ...deleteDoc.schema, params: snapshotParams, querystring: waitFlag, response: { 202: documents(snapshotAnswer), 200: documents(snapshotAnswer), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => reply.code(req.query.wait === 'true' ? 200 : 202).send(await request(principalOf(req), req.params.id, req.query, 'delete', req.params.name)),
  });

  const migrateDoc = needs('VM.Migrate', { summary: 'Move a VM to another host: live when RUNNING (its disks on shared storage), cold when stopped', tags: ['vms'] });
  r.post('/api/v1/vms/:id/migrate', {
    ...migrateDoc,
    schema: { ...migrateDoc.schema, params: vmIdParams, querystring: waitFlag, body: z.strictObject({ to: z.string().regex(HOST_NAME_RE, 'must be a host name') }), response: { 202: documents(vmSchema), 200: documents(vmSchema), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      const vm = await access.get(principal, req.params.id);
      const result = await migrateVm(deps.store, {
        ref: vm.uuid,
        to: req.body.to,
        waitSeconds: req.query.wait === 'true' ? Math.min(req.query.timeout, deps.settings.maxWaitSeconds) : null,
        onProgress: () => undefined,
        authorize: ownerGuard(principal, req.params.id),
      });
      await deps.vmIndex.caughtUp(result.revision);
      if (result.revision) {
        await audit(deps, principal, { event: 'vm.requested', vm: vm.uuid, owner: typeof result.record?.owner === 'string' ? result.record.owner : undefined, revision: result.revision, fields: ['migration'], message: `${principal.user} asked to move VM ${result.label} to ${req.body.to} (${result.plan.kind}).` });
      }
      return sendVm(reply, result.revision && req.query.wait !== 'true' ? 202 : 200, result.record ?? { uuid: vm.uuid });
    },
  });
}
