/** The host record, `P/host/<name>` (CONTRACT.md section 4). */
import { z } from 'zod';
import { HOST_STATUSES } from './status.js';

/** drover extension: where the agent serves its VMs' consoles to API processes (docs/consoles.md), and its certificate's sha256 fingerprint. */
export const consoleEndpointSchema = z.object({ address: z.string(), port: z.int().min(1).max(65535), sha256: z.string() });
export type ConsoleEndpoint = z.infer<typeof consoleEndpointSchema>;

export const hostRecordSchema = z.looseObject({
  name: z.string(),
  hostid: z.string(),
  ip: z.string(),
  status: z.enum(HOST_STATUSES),
  cpus: z.int(),
  memory: z.int(),
  reserved_memory: z.int(),
  free_memory: z.int(),
  version: z.string(),
  heartbeat_at: z.string(),
  /** drover extension: the accelerator the agent uses (kvm or tcg). */
  accel: z.string().optional(),
  /** drover extension: VMs this agent runs right now. */
  vms: z.int().optional(),
  console: consoleEndpointSchema.optional(),
});

export type HostRecord = z.infer<typeof hostRecordSchema>;

/** The value of `P/alive/<name>`, written under the agent's lease. */
export const aliveRecordSchema = z.looseObject({
  hostid: z.string(),
  pid: z.int(),
  since: z.string(),
});
export type AliveRecord = z.infer<typeof aliveRecordSchema>;
