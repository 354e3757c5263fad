/**
 * /api/v1/vms: list, get, create, PATCH, delete (CONTRACT.md section 7).
 * Every read goes through VmAccess (owner scoping), every write through
 * the same VM operations as the CLI (src/vm-ops), with compare-and-swap.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { seesAllVms } from '../../auth/privileges.js';
import { validateVmRecord } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import { rawObject, toStoredVm, type JsonObject, type StoredVm } from '../../store/vm-repository.js';
import { changeStatus } from '../../vm-ops/change-status.js';
import { createVmAt } from '../../vm-ops/create-vm.js';
import { vmLabel, vmObject } from '../../vm-ops/vm-view.js';
import { waitForGoal } from '../../vm-ops/wait-for-goal.js';
import { refuseAdminFields, refuseSystemFields, refuseUuidChange } from '../admin-fields.js';
import { audit } from '../audit.js';
import { principalOf, type ApiDeps } from '../context.js';
import { FieldError } from '../errors.js';
import { mergePatch, pageVms } from '../list-vms.js';
import { needs } from '../route-options.js';
import { documents, errorSchema, vmCreateSchema, vmIdParams, vmListQuery, vmListSchema, vmSchema, waitQuery } from '../schemas.js';
import { bootDirsFor } from '../boot-dirs.js';
import { ownerGuard, VmAccess, vmNotFound } from '../vm-access.js';

const TAGS = ['vms'];

export function etag(revision: string): string {
  return `"${revision}"`;
}

/** The revision an `If-Match` names, or undefined; `*` means "whatever it is now". */
function ifMatch(header: string | string[] | undefined): string | undefined {
  const h = Array.isArray(header) ? header[0] : header;
  if (h === undefined || h.trim() === '*') return undefined;
  const m = /^\s*(?:W\/)?"?(\d+)"?\s*$/.exec(h);
  if (!m) throw new FieldError('If-Match', 'The If-Match header must be an ETag this API gave out, like "1234".', 'USAGE');
  return m[1];
}

export function sendVm(reply: FastifyReply, status: number, obj: JsonObject, revision?: string): FastifyReply {
  if (revision) void reply.header('ETag', etag(revision));
  return reply.code(status).send(obj);
}

function changedFields(before: JsonObject, after: JsonObject): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...keys].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).sort();
}

export function registerVmRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const access = new VmAccess(deps.store, deps.vmIndex);
  const r = app.withTypeProvider<ZodTypeProvider>();

  const listDoc = needs('VM.Audit', { summary: 'List VMs', description: 'Filters, sort and cursor paging. A `user` sees only its own VMs.', tags: TAGS });
  r.get('/api/v1/vms', {
    ...listDoc,
    schema: { ...listDoc.schema, querystring: vmListQuery, response: { 200: documents(vmListSchema), 400: documents(errorSchema), 401: documents(errorSchema) } },
    handler: async (req) => pageVms(access.visible(principalOf(req)), req.query),
  });

  const getDoc = needs('VM.Audit', { summary: 'Get one VM', description: 'By uuid or name. The ETag is the record\'s etcd mod revision (for If-Match).', tags: TAGS });
  r.get('/api/v1/vms/:id', {
    ...getDoc,
    schema: { ...getDoc.schema, params: vmIdParams, response: { 200: documents(vmSchema), 404: documents(errorSchema) } },
    handler: async (req, reply) => {
      const vm = await access.get(principalOf(req), req.params.id);
      return sendVm(reply, 200, vmObject(vm), vm.modRevision);
    },
  });

  const createDoc = needs('VM.Allocate', {
    summary: 'Create a VM',
    description: 'A VM record without uuid (one is made), status REQUESTED_NEW. `owner` defaults to the caller. Answers 202 while the scheduler and an agent act; `?wait=RUNNING` answers once it runs.',
    tags: TAGS,
  });
  r.post('/api/v1/vms', {
    ...createDoc,
    schema: { ...createDoc.schema, body: vmCreateSchema, querystring: waitQuery, response: { 202: documents(vmSchema), 201: documents(vmSchema), 400: documents(errorSchema), 403: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      const body = { ...(req.body as JsonObject) };
      if (body.owner === undefined) body.owner = principal.user;
      refuseSystemFields(null, body);
      refuseAdminFields(principal, null, body, await bootDirsFor(deps, principal));
      const findName = async (name: string) => deps.vmIndex.uuidNamed(name);
      const { record: created, revision } = await createVmAt(deps.store, body, { findName }).catch((err: unknown) => {
        // The name check must not reveal another user's VM (its uuid) to a scoped caller.
        if (err instanceof DroverError && err.code === 'CONFLICT' && err.message.startsWith('The name ') && !seesAllVms(principal.role)) {
          throw new DroverError('CONFLICT', `The name ${String(body.name)} is already taken.`);
        }
        throw err;
      });
      const uuid = String(created.uuid);
      await Promise.all([
        deps.vmIndex.caughtUp(revision),
        audit(deps, principal, { event: 'vm.requested', vm: uuid, owner: String(created.owner ?? ''), revision, fields: Object.keys(created).sort(), message: `${principal.user} created VM ${String(created.name)}.` }),
      ]);
      void reply.header('Location', `/api/v1/vms/${uuid}`);
      if (req.query.wait) {
        const key = deps.store.keys.vm(uuid);
        const stored = toStoredVm({ key, raw: JSON.stringify(created), modRevision: revision, createRevision: revision, lease: '0' }, deps.store.keys);
        const done = await waitFor(deps, stored, req.query.wait, req.query.timeout);
        return sendVm(reply, 201, done ?? created);
      }
      return sendVm(reply, 202, created, revision);
    },
  });

  const patchDoc = needs('VM.Config', {
    summary: 'Change a VM',
    description: 'A JSON merge patch (RFC 7396) of the record: null removes a field, objects merge. `If-Match` with the ETag makes it conditional (409 when the record moved). Status changes go through the actions.',
    tags: TAGS,
  });
  r.patch('/api/v1/vms/:id', {
    ...patchDoc,
    schema: { ...patchDoc.schema, params: vmIdParams, body: z.looseObject({}).describe('A JSON merge patch of the VM record.'), response: { 200: documents(vmSchema), 400: documents(errorSchema), 403: documents(errorSchema), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      const expected = ifMatch(req.headers['if-match']);
      const found = await access.get(principal, req.params.id);
      const bootDirs = await bootDirsFor(deps, principal);
      const guard = ownerGuard(principal, req.params.id);
      for (let attempt = 0; attempt < 10; attempt++) {
        // Every attempt reads etcd and checks the owner again: the VM may have been handed to someone else meanwhile.
        const current: StoredVm | null = await deps.store.vms.get(found.uuid);
        if (!current) throw vmNotFound(req.params.id);
        const before = rawObject(current.raw);
        if (!before) throw new DroverError('INVALID_SPEC', `The record of VM ${vmLabel(current)} is not a JSON object; an admin must fix it.`);
        guard(before);
        if (expected !== undefined && current.modRevision !== expected) {
          return reply.code(409).send({ error: `VM ${vmLabel(current)} changed since revision ${expected} (it is at ${current.modRevision}); read it again.`, field: 'If-Match' });
        }
        const next = mergePatch(before, req.body) as JsonObject;
        refuseUuidChange(before, next);
        refuseSystemFields(before, next);
        refuseAdminFields(principal, before, next, bootDirs);
        const valid = validateVmRecord(next, current.uuid);
        if (!valid.ok) throw new FieldError('body', valid.error);
        const written = await deps.store.vms.replaceAndGet(current, next);
        if (!written) {
          if (expected !== undefined) return reply.code(409).send({ error: `VM ${vmLabel(current)} changed while it was being written; read it again.`, field: 'If-Match' });
          continue;
        }
        await deps.vmIndex.caughtUp(written.modRevision);
        const fields = changedFields(before, next);
        await audit(deps, principal, { event: 'vm.requested', vm: current.uuid, owner: String(next.owner ?? ''), revision: written.modRevision, fields, message: `${principal.user} changed ${fields.join(', ') || 'nothing'} of VM ${vmLabel(current)}.` });
        return sendVm(reply, 200, vmObject(written), written.modRevision);
      }
      throw new DroverError('CONFLICT', `VM ${vmLabel(found)} kept changing under 10 attempts to patch it; try again.`, true);
    },
  });

  const deleteDoc = needs('VM.Allocate', { summary: 'Delete a VM', description: 'Writes REQUESTED_DELETE: the agent stops it, removes its files and disks, then the record. `?wait=deleted` answers once it is gone.', tags: TAGS });
  r.delete('/api/v1/vms/:id', {
    ...deleteDoc,
    schema: { ...deleteDoc.schema, params: vmIdParams, querystring: waitQuery, response: { 202: documents(vmSchema), 200: documents(z.object({ uuid: z.string(), deleted: z.literal(true) })), 404: documents(errorSchema) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      const vm = await access.get(principal, req.params.id);
      const wait = req.query.wait;
      const result = await changeStatus(deps.store, {
        action: 'delete',
        ref: vm.uuid,
        force: false,
        waitSeconds: wait ? Math.min(req.query.timeout, deps.settings.maxWaitSeconds) : null,
        goal: wait,
        onProgress: () => undefined,
        authorize: ownerGuard(principal, req.params.id),
      });
      await deps.vmIndex.caughtUp(result.revision);
      if (result.revision) await audit(deps, principal, { event: 'vm.requested', vm: vm.uuid, owner: String(rawObject(vm.raw)?.owner ?? ''), revision: result.revision, fields: ['status'], message: `${principal.user} asked to delete VM ${result.label}.` });
      if (result.record === null) return reply.code(200).send({ uuid: vm.uuid, deleted: true as const });
      return sendVm(reply, 202, result.record, result.revision ?? undefined);
    },
  });
}

/** Waits for a status (or deletion) from a known revision; null when deleted. */
export async function waitFor(deps: ApiDeps, vm: StoredVm, goal: string, timeoutSeconds: number): Promise<JsonObject | null> {
  const status = String(rawObject(vm.raw)?.status ?? '');
  if (status === goal) return vmObject(vm);
  return waitForGoal(deps.store.kv, {
    key: vm.key,
    label: vmLabel(vm),
    afterRevision: vm.modRevision,
    initialStatus: status,
    goal,
    timeoutMs: Math.min(timeoutSeconds, deps.settings.maxWaitSeconds) * 1000,
    onStatus: () => undefined,
  });
}
