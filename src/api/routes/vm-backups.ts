/**
 * A VM's backups in S3 (docs/backups.md, "Through the API"). Starting a
 * backup or a restore writes `backup_request` into the record (one
 * compare-and-swap, src/vm-ops/backup-request.ts); the agent of the VM's
 * host, which holds the disks, does the work. Listing and deleting read and
 * write the bucket directly: the cluster's backup store
 * (`drover backup store set`), opened with this API process's credentials
 * (DROVER_S3_ACCESS_KEY_ID / DROVER_S3_SECRET_ACCESS_KEY, else the AWS
 * SDK's default chain). A VM's backups are looked up under its own uuid
 * only, so nobody restores or deletes another VM's backup through it.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Principal } from '../../auth/authenticate.js';
import { BACKUP_NAME_RE } from '../../contract/backup-request.js';
import type { BackupManifest } from '../../storage/backup.js';
import { requireBackupStoreConfig } from '../../storage/backup-store-config.js';
import { rawObject, type JsonObject } from '../../store/vm-repository.js';
import { requestBackup } from '../../vm-ops/backup-request.js';
import { audit } from '../audit.js';
import { principalOf, type ApiDeps } from '../context.js';
import { needs } from '../route-options.js';
import { documents, errorSchema, vmIdParams } from '../schemas.js';
import { ownerGuard, VmAccess } from '../vm-access.js';

const TAGS = ['backups'];
const waitFlag = z.object({
  wait: z.enum(['true', 'false']).optional().describe('true: answer once the agent reports the outcome.'),
  timeout: z.coerce.number().int().min(1).max(3600).default(900),
});
const backupWord = z.string().regex(BACKUP_NAME_RE, 'must be a backup id or name: letters, digits and "-_.:", up to 64');
const backupParams = vmIdParams.extend({ backup: backupWord });

const backupSummary = z.object({
  id: z.string(),
  name: z.string(),
  created_at: z.string(),
  disks: z.int().describe('How many disks it holds.'),
  size: z.int().describe('Bytes stored, all disks.'),
});
const requestAnswer = z.object({ uuid: z.string(), request: z.looseObject({}) });

type S3Backups = typeof import('../../storage/backup.js') & typeof import('../../storage/s3/client.js');

/** The AWS SDK is loaded on the first backup route, not when the API starts. */
let s3Modules: Promise<S3Backups> | undefined;
const loadS3 = (): Promise<S3Backups> =>
  (s3Modules ??= Promise.all([import('../../storage/backup.js'), import('../../storage/s3/client.js')]).then(([a, b]) => ({ ...a, ...b })));

export function registerVmBackupRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const access = new VmAccess(deps.store, deps.vmIndex);
  const r = app.withTypeProvider<ZodTypeProvider>();

  /** Runs `use` with the cluster's bucket opened with this process's credentials. */
  const withBucket = async <T>(use: (s3: S3Backups, target: { client: import('@aws-sdk/client-s3').S3Client; bucket: string }) => Promise<T>): Promise<T> => {
    const location = await requireBackupStoreConfig(deps.store.kv, deps.store.keys);
    const s3 = await loadS3();
    const creds = deps.settings.s3Credentials;
    const client = s3.createS3Client({ ...location, ...(creds !== undefined ? { credentials: creds } : {}) });
    try {
      return await use(s3, { client, bucket: location.bucket });
    } finally {
      client.destroy();
    }
  };
  const summary = (m: BackupManifest) => ({ id: m.id, name: m.name, created_at: m.created_at, disks: m.disks.length, size: m.disks.reduce((n, d) => n + d.size, 0) });

  const listDoc = needs('VM.Audit', { summary: "A VM's backups, oldest first, and its last backup or restore request", tags: TAGS });
  r.get('/api/v1/vms/:id/backups', {
    ...listDoc,
    schema: { ...listDoc.schema, params: vmIdParams, response: { 200: documents(z.object({ uuid: z.string(), backups: z.array(backupSummary), request: z.looseObject({}).nullable() })), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req) => {
      const vm = await access.get(principalOf(req), req.params.id);
      const backups = await withBucket((s3, target) => s3.listBackups(target, vm.uuid));
      const obj = rawObject(vm.raw) ?? {};
      return { uuid: vm.uuid, backups: backups.map(summary), request: (obj.backup_request as object | undefined) ?? null };
    },
  });

  const ask = async (principal: Principal, id: string, wait: z.infer<typeof waitFlag>, op: 'backup' | 'restore', name: string | undefined) => {
    const vm = await access.get(principal, id);
    const result = await requestBackup(deps.store, {
      op,
      ref: vm.uuid,
      ...(name !== undefined ? { name } : {}),
      requestor: principal.user,
      waitSeconds: wait.wait === 'true' ? Math.min(wait.timeout, deps.settings.maxWaitSeconds) : null,
      onProgress: () => undefined,
      authorize: ownerGuard(principal, id),
    });
    await deps.vmIndex.caughtUp(result.revision);
    const what = op === 'backup' ? `a backup${name !== undefined ? ` named ${name}` : ''}` : `a restore from backup ${name ?? ''}`;
    await audit(deps, principal, { event: 'vm.requested', vm: vm.uuid, owner: typeof result.record.owner === 'string' ? result.record.owner : undefined, revision: result.revision, fields: ['backup_request'], message: `${principal.user} asked for ${what} of VM ${result.label}.` });
    return { uuid: vm.uuid, request: result.request };
  };

  const createDoc = needs('VM.Backup', { summary: "Back up every disk of a VM to the cluster's backup store (a RUNNING VM at one snapshot of all its qcow2 disks); its host's agent does it", tags: TAGS });
  r.post('/api/v1/vms/:id/backups', {
    ...createDoc,
    schema: { ...createDoc.schema, params: vmIdParams, querystring: waitFlag, body: z.strictObject({ name: backupWord.optional() }).default({}), response: { 202: documents(requestAnswer), 200: documents(requestAnswer), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      // Said before anything is written: without a store the agent could only fail it.
      await requireBackupStoreConfig(deps.store.kv, deps.store.keys);
      return reply.code(req.query.wait === 'true' ? 200 : 202).send(await ask(principal, req.params.id, req.query, 'backup', req.body.name));
    },
  });

  const restoreDoc = needs('VM.Backup', { summary: "Restore one of the VM's backups over its disks (the VM must be stopped; starting it waits until the restore is done)", tags: TAGS });
  r.post('/api/v1/vms/:id/backups/:backup/restore', {
    ...restoreDoc,
    schema: { ...restoreDoc.schema, params: backupParams, querystring: waitFlag, response: { 202: documents(requestAnswer), 200: documents(requestAnswer), 404: documents(errorSchema), 409: documents(errorSchema) } },
    handler: async (req, reply) => {
      const principal = principalOf(req);
      const vm = await access.get(principal, req.params.id);
      // The backup must be one of this VM's (looked up under its uuid); its id, so a later backup of the same name is not restored instead.
      const found = await withBucket(async (s3, target) => s3.findBackup(await s3.listBackups(target, vm.uuid), req.params.backup));
      return reply.code(req.query.wait === 'true' ? 200 : 202).send(await ask(principal, req.params.id, req.query, 'restore', found.id));
    },
  });

  const deleteDoc = needs('VM.Backup', { summary: 'Delete one of the VM\'s backups (its manifest first, so it disappears at once)', tags: TAGS });
  r.delete('/api/v1/vms/:id/backups/:backup', {
    ...deleteDoc,
    schema: { ...deleteDoc.schema, params: backupParams, response: { 200: documents(z.object({ uuid: z.string(), deleted: z.string() })), 404: documents(errorSchema) } },
    handler: async (req) => {
      const principal = principalOf(req);
      const vm = await access.get(principal, req.params.id);
      const m = await withBucket(async (s3, target) => {
        const found = s3.findBackup(await s3.listBackups(target, vm.uuid), req.params.backup);
        await s3.deleteBackup(target, found);
        return found;
      });
      const owner = (rawObject(vm.raw) as JsonObject | null)?.owner;
      await audit(deps, principal, { event: 'vm.requested', vm: vm.uuid, owner: typeof owner === 'string' ? owner : undefined, message: `${principal.user} deleted backup ${m.id} (${m.name}) of VM ${vm.uuid}.` });
      return { uuid: vm.uuid, deleted: m.id };
    },
  });
}
