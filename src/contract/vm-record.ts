/**
 * The VM record, `P/vm/<uuid>` (CONTRACT.md section 3).
 *
 * One zod schema gives both the runtime check and the TypeScript type. Parsing
 * never throws: it returns either the typed record or one sentence saying what
 * is wrong, which the agent writes into the record's `error`. Unknown fields
 * are kept (`loose`), so a rewrite never drops what another tool wrote.
 */
import { z } from 'zod';
import { backupRequestSchema } from './backup-request.js';
import { snapshotRequestSchema, vmSnapshotSchema } from './snapshot.js';
import { VM_STATUSES } from './status.js';

export const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const HOST_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Linux interface names: at most 15 bytes, no '/', no whitespace. */
export const BRIDGE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

/** The number of lines kept in a record's `log`. */
export const RECORD_LOG_LINES = 10;

const absolutePath = z
  .string()
  .min(2)
  .max(4096)
  .refine((p) => p.startsWith('/') && !p.split('/').includes('..') && !p.includes('\0'), {
    message: 'must be an absolute path without ".." segments',
  });

export const bootSchema = z.looseObject({
  kernel: absolutePath,
  initrd: absolutePath.optional(),
  cmdline: z.string().max(4096).optional(),
});

/** A Ceph RBD image, `pool/name` (each part as Ceph allows: no "/", "@" or ","). */
export const RBD_RE = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,200}$/;

export const diskSchema = z
  .looseObject({
    /** An image (docs/storage.md): its uuid, `name:version`, or `name` (the newest version). */
    image: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(:[A-Za-z0-9][A-Za-z0-9._+-]{0,63})?$/, 'must be an image name, name:version or uuid')
      .optional(),
    /** MiB; an image disk's overlay is grown to it. */
    size: z.int().min(1).max(64 * 1024 * 1024).optional(),
    path: absolutePath.optional(),
    /** drover extension: a Ceph RBD image `pool/name`, opened by qemu's rbd driver (docs/storage.md). */
    rbd: z.string().regex(RBD_RE, 'must be pool/name').optional(),
    format: z.enum(['raw', 'qcow2']).optional(),
  })
  .refine((d) => [d.image, d.path, d.rbd].filter((v) => v !== undefined).length === 1, {
    message: 'a disk needs exactly one of "image", "path" or "rbd"',
  });

export const nicSchema = z.looseObject({
  network: z.union([z.literal('user'), z.string().regex(BRIDGE_NAME_RE, 'must be "user" or a bridge name')]),
  mac: z
    .string()
    .regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, 'must be a MAC address like 52:54:00:12:34:56')
    .optional(),
});

export const vmSpecSchema = z
  .looseObject({
    vcpus: z.int().min(1).max(256).default(1),
    memory: z.int().min(16).max(4 * 1024 * 1024),
    boot: bootSchema.optional(),
    disks: z.array(diskSchema).max(16).optional(),
    nics: z.array(nicSchema).max(8).optional(),
    vnc: z.enum(['unix', 'tcp', 'none']).default('unix'),
    restart: z.enum(['always', 'on-failure', 'never']).default('always'),
    /** Hosts the scheduler may place this VM on (OpenSVC `nodes`; drover extension). */
    nodes: z.array(z.string().regex(HOST_NAME_RE, 'must be a host name')).max(1000).optional(),
    /** The host the scheduler prefers when it fits (OpenSVC `autostart_node`). */
    autostart_node: z.string().regex(HOST_NAME_RE, 'must be a host name').optional(),
    /** Move the VM to another host when its host dies (needs shared storage). */
    failover: z.boolean().optional(),
    /** Hosts to fail over to (OpenSVC `drpnodes`); any allowed host when absent. */
    drpnodes: z.array(z.string().regex(HOST_NAME_RE, 'must be a host name')).max(1000).optional(),
    /** Seconds to wait for a graceful ACPI power-down before forcing (drover extension). */
    stop_timeout: z.int().min(0).max(3600).optional(),
  })
  .refine((s) => s.boot !== undefined || (s.disks !== undefined && s.disks.length > 0), {
    message: 'a VM needs "boot" or at least one disk',
  });

export const vmRuntimeSchema = z.looseObject({
  pid: z.int().optional(),
  started_at: z.string().optional(),
  vnc: z.string().optional(),
  serial_log: z.string().optional(),
  /** The serial console's unix socket on the VM's host (docs/consoles.md). */
  serial_socket: z.string().optional(),
});

/** Steps of a live migration, in order; `failed` can follow any but `completed` (docs/migration.md). */
export const MIGRATION_STATES = ['requested', 'ready', 'sending', 'completed', 'failed'] as const;
export type MigrationState = (typeof MIGRATION_STATES)[number];

/**
 * drover extension: a live migration of the VM (docs/migration.md). Written
 * by the CLI (`target`, `requested_at`), then by the source agent (`source`,
 * `state`, `progress`, the final host change) and the target agent (`uri`,
 * `incoming`, state `ready`), each with a compare-and-swap.
 */
export const migrationSchema = z.looseObject({
  target: z.string().regex(HOST_NAME_RE, 'must be a host name'),
  source: z.string().regex(HOST_NAME_RE, 'must be a host name').optional(),
  state: z.enum(MIGRATION_STATES).default('requested'),
  requested_at: z.string().optional(),
  /** Where the target's qemu listens (tcp:HOST:PORT), written by the target agent. */
  uri: z.string().max(300).optional(),
  /** The target's waiting qemu, becoming the record's `runtime` once the VM has moved. */
  incoming: vmRuntimeSchema.optional(),
  progress: z
    .looseObject({ transferred: z.number(), remaining: z.number(), total: z.number(), updated_at: z.string().optional() })
    .optional(),
  error: z.string().optional(),
  finished_at: z.string().optional(),
});

export type Migration = z.infer<typeof migrationSchema>;

export const vmRecordSchema = z.looseObject({
  uuid: z.string().regex(UUID_RE, 'must be a lower-case UUID'),
  name: z.string().regex(VM_NAME_RE, 'must match ^[a-z0-9][a-z0-9-]{0,62}$'),
  owner: z.string().max(256).optional(),
  host: z.union([z.literal(''), z.string().regex(HOST_NAME_RE, 'must be a host name')]).optional(),
  status: z.enum(VM_STATUSES).optional(),
  spec: vmSpecSchema,
  error: z.string().optional(),
  log: z.array(z.string()).optional(),
  /** drover extension: `vm stop -F` asks for a forced stop with TO_STOP. */
  force_stop: z.boolean().optional(),
  /** drover extension: why the scheduler has not placed the VM yet. */
  pending_reason: z.string().optional(),
  /** drover extension: the pool that created this VM and keeps it replaced (docs/pools.md). */
  pool: z.string().optional(),
  /** drover extension: what the agent last saw of the running process. */
  runtime: vmRuntimeSchema.optional(),
  /** drover extension: the live migration under way or the last one (docs/migration.md). */
  migration: migrationSchema.optional(),
  /** drover extension: the VM's disk snapshots, written by its agent (docs/snapshots.md). */
  snapshots: z.array(vmSnapshotSchema).optional(),
  /** drover extension: the snapshot operation asked for and its outcome (docs/snapshots.md). */
  snapshot_request: snapshotRequestSchema.optional(),
  /** drover extension: the backup or restore asked for and its outcome (docs/backups.md). */
  backup_request: backupRequestSchema.optional(),
});

export type VmRecord = z.infer<typeof vmRecordSchema>;
export type VmSpec = z.infer<typeof vmSpecSchema>;
export type DiskSpec = z.infer<typeof diskSchema>;
export type NicSpec = z.infer<typeof nicSchema>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Parses the raw bytes of a `P/vm/<uuid>` value. `uuid` is the key's last
 * segment, which the record's own `uuid` must equal.
 */
export function parseVmRecord(raw: string, uuid: string): ParseResult<VmRecord> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    return { ok: false, error: `The record is not valid JSON (${(err as Error).message}).` };
  }
  return validateVmRecord(json, uuid);
}

export function validateVmRecord(json: unknown, uuid: string): ParseResult<VmRecord> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, error: 'The record must be a JSON object.' };
  }
  if (!UUID_RE.test(uuid)) {
    return { ok: false, error: `The key's last segment ${JSON.stringify(uuid)} is not a lower-case UUID.` };
  }
  const result = vmRecordSchema.safeParse(json);
  if (!result.success) return { ok: false, error: describeIssues(result.error.issues) };
  if (result.data.uuid !== uuid) {
    return { ok: false, error: `Field uuid ${JSON.stringify(result.data.uuid)} does not match the key's uuid ${uuid}.` };
  }
  return { ok: true, value: result.data };
}

/** Turns zod's issues into one sentence naming the first bad field. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  const first = issues[0];
  if (!first) return 'The record is invalid.';
  const field = first.path.length > 0 ? first.path.map(String).join('.') : 'record';
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  const message = first.message.replace(/^Invalid input: /, '');
  return `Field ${field} is invalid: ${message}${more}.`;
}

/** Appends `"<ISO time> - <text>"` to a record's log, keeping the newest lines. */
export function appendLog(log: readonly string[] | undefined, text: string, now: Date): string[] {
  const next = [...(log ?? []), `${now.toISOString()} - ${text}`];
  return next.slice(-RECORD_LOG_LINES);
}
