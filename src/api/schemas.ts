/**
 * The request and response shapes of the API, built from the contract's own
 * schemas (src/contract) so the OpenAPI file and the records agree.
 */
import { z } from 'zod';
import { ROLES } from '../contract/auth-records.js';
import { VM_STATUSES } from '../contract/status.js';
import { vmRecordSchema } from '../contract/vm-record.js';

/**
 * Responses are written with JSON.stringify, not checked against their
 * schema: a record in etcd that another tool wrote badly is still shown as
 * it is (with the agent's `error`), never turned into a 500. The schema
 * documents the response in the OpenAPI file; for the handlers' types it is
 * `unknown`.
 */
export function documents(schema: z.ZodType): z.ZodType<unknown> {
  return schema as z.ZodType<unknown>;
}

export const errorSchema = z
  .object({
    error: z.string().describe('One sentence saying what is wrong.'),
    field: z.string().optional().describe('The field at fault, as a dotted path (body.spec.memory), when one is.'),
    problems: z.array(z.object({ field: z.string(), error: z.string() })).optional().describe('Every problem, when a body has several.'),
  })
  .meta({ id: 'Error' });

export const vmSchema = vmRecordSchema.meta({ id: 'VmRecord', description: 'A VM record (CONTRACT.md section 3); unknown fields are kept.' });

/** What POST /vms takes: a VM record without a uuid (one is made) and with the spec defaults filled in. */
export const vmCreateSchema = vmRecordSchema.extend({ uuid: vmRecordSchema.shape.uuid.optional() }).meta({ id: 'VmCreate' });

export const vmListSchema = z.object({
  items: z.array(vmSchema),
  next_cursor: z.string().nullable().describe('Pass as ?cursor= for the next page; null on the last.'),
  total: z.int().describe('How many VMs match the filters (all pages).'),
});

export const SORT_FIELDS = ['name', 'uuid', 'status', 'host', 'owner'] as const;

export const vmListQuery = z.object({
  owner: z.string().max(256).optional(),
  host: z.string().max(256).optional(),
  status: z.enum(VM_STATUSES).optional(),
  pool: z.string().max(256).optional(),
  q: z.string().max(256).optional().describe('Free text, matched case-insensitively against name, uuid, owner and host.'),
  sort: z
    .enum([...SORT_FIELDS, ...SORT_FIELDS.map((f) => `-${f}` as const)])
    .default('name')
    .describe('A field, or -field for descending.'),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  cursor: z.string().max(2048).optional(),
});

export const vmIdParams = z.object({ id: z.string().min(1).max(256).describe('The VM uuid, or its name.') });

export const waitQuery = z.object({
  wait: z
    .union([z.enum(VM_STATUSES), z.literal('deleted')])
    .optional()
    .describe('Answer only once the VM reaches this status (or is deleted), like the CLI --wait.'),
  timeout: z.coerce.number().int().min(1).max(3600).default(120).describe('Seconds to wait at most (504 when the time is up).'),
});

export const stopBody = z.object({ force: z.boolean().optional().describe('Skip the graceful ACPI power-down.') }).nullish();

export const roleSchemaDoc = z.enum(ROLES);
