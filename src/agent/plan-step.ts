/** What a planned step writes and reports: shared by plan-vm.ts and plan-snapshot.ts (and the worker that carries them out). */
import type { EventCode, EventLevel } from '../contract/event.js';
import type { VmStatus } from '../contract/status.js';
import type { SnapshotRequest } from '../contract/snapshot.js';
import type { Migration } from '../contract/vm-record.js';

export interface EventSpec {
  level: EventLevel;
  event: EventCode;
  message: string;
  /** Also send it by e-mail. */
  email: boolean;
}

/** Fields the agent writes into the record. `null` removes a field. */
export interface RecordPatch {
  status: VmStatus;
  error?: string;
  runtime?: null;
  force_stop?: null;
  /** Fields merged into the record's `migration`. */
  migration?: Partial<Migration>;
  /** Fields merged into the record's `snapshot_request` (docs/snapshots.md). */
  snapshot_request?: Partial<SnapshotRequest>;
}
