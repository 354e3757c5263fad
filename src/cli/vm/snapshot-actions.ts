/**
 * What the `drover vm snapshot` commands do once commander has parsed them
 * (loaded on demand by commands/vm-snapshot.ts).
 */
import { describeSnapshotOp, type SnapshotOp } from '../../contract/snapshot.js';
import { DEFAULT_SNAPSHOT_WAIT_SECONDS } from './snapshot-wait.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { printJson, printLine, printProgress } from '../output/print.js';
import { formatTable } from '../output/table.js';
import { withStore } from '../store-session.js';
import { listSnapshots, requestSnapshot } from '../../vm-ops/snapshot-vm.js';

export interface SnapshotFlags extends GlobalFlags {
  /** true/number: --wait; false: --no-wait; undefined: the default (wait). */
  wait?: number | boolean;
}

export async function snapshotAction(ctx: CliContext, op: SnapshotOp, ref: string, name: string, flags: SnapshotFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const wait = flags.wait === false ? null : typeof flags.wait === 'number' ? flags.wait : DEFAULT_SNAPSHOT_WAIT_SECONDS;
  const result = await withStore(opts, (store) =>
    requestSnapshot(store, { op, ref, name, waitSeconds: wait, onProgress: (line) => printProgress(ctx.io, line) }),
  );
  if (opts.json) return printJson(ctx.io, { uuid: result.uuid, snapshot_request: result.request, snapshots: result.record.snapshots ?? [] });
  const { label, request } = result;
  if (wait === null) return printLine(ctx.io, `VM ${label}: snapshot ${describeSnapshotOp(op, name)} requested.`);
  if (op === 'create') return printLine(ctx.io, `Snapshot ${name} of VM ${label} created.`);
  if (op === 'delete') return printLine(ctx.io, `Snapshot ${name} of VM ${label} deleted.`);
  const deleted = Array.isArray(request.deleted) ? (request.deleted as string[]) : [];
  const newer = deleted.length > 0 ? `; deleted the newer snapshot${deleted.length > 1 ? 's' : ''} ${deleted.join(', ')}` : '';
  printLine(ctx.io, `VM ${label} rolled back to snapshot ${name}${newer}${request.restart === true ? '; it is running again' : ''}.`);
}

export async function listSnapshotsAction(ctx: CliContext, ref: string, flags: GlobalFlags & { header: boolean }): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const listing = await withStore(opts, (store) => listSnapshots(store, ref));
  if (opts.json) return printJson(ctx.io, { uuid: listing.uuid, snapshots: listing.snapshots, snapshot_request: listing.request });
  const rows = listing.snapshots.map((s) => [String(s.name ?? '-'), String(s.created_at ?? '-'), s.incomplete === true ? 'yes' : '-']);
  ctx.io.stdout.write(formatTable(['name', 'created', 'incomplete'], rows, { header: flags.header }));
  // What is going on, on stderr (stdout stays the table).
  const req = listing.request;
  if (req && (req.state === 'requested' || req.state === 'running' || req.state === undefined)) {
    printProgress(ctx.io, `VM ${listing.label}: snapshot ${describeSnapshotOp(String(req.op), String(req.name))} is under way.`);
  } else if (req?.state === 'failed') {
    printProgress(ctx.io, `VM ${listing.label}: the last snapshot request (${describeSnapshotOp(String(req.op), String(req.name))}) failed: ${String(req.error ?? 'no reason given')}`);
  }
  if (listing.snapshots.length === 0 && flags.header) printProgress(ctx.io, `VM ${listing.label} has no snapshots.`);
}
