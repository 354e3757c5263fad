/**
 * What the `drover vm` commands do, once commander has parsed them. Loaded
 * on demand by commands/vm.ts, so that `--help` and usage errors do not pay
 * for loading etcd3 and zod.
 */
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { DEFAULT_VM_COLUMNS } from '../output/columns.js';
import { parseColumns, parseFilters } from '../output/fields.js';
import { printJson, printLine, printProgress } from '../output/print.js';
import { formatTable } from '../output/table.js';
import { readJsonInput } from '../read-input.js';
import { withStore } from '../store-session.js';
import { waitSeconds } from '../wait-option.js';
import { changeStatus } from '../../vm-ops/change-status.js';
import { createVm } from '../../vm-ops/create-vm.js';
import { selectObjects, selectVms, vmJson, vmRows } from './list-vms.js';
import { changeThroughApi, createThroughApi, getThroughApi, listThroughApi } from './vm-through-api.js';
import { resolveVm } from '../../vm-ops/resolve-vm.js';
import type { VmAction } from '../../vm-ops/status-plan.js';
import { formatVmLog, readVmLog } from './vm-log.js';
import { migrateVm } from '../../vm-ops/migrate-vm.js';

export interface ListFlags extends GlobalFlags {
  output?: string;
  header: boolean;
}

export interface ChangeFlags extends GlobalFlags {
  wait?: number | boolean;
  force?: boolean;
}

export async function createAction(ctx: CliContext, flags: GlobalFlags & { file: string }): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const input = await readJsonInput(ctx.io, flags.file);
  const record = opts.api ? await createThroughApi(opts.api, input) : await withStore(opts, (store) => createVm(store, input));
  if (opts.json) printJson(ctx.io, record);
  else printLine(ctx.io, String(record.uuid));
}

export async function listAction(ctx: CliContext, filterWords: readonly string[], flags: ListFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const filters = parseFilters(filterWords);
  const columns = flags.output !== undefined ? parseColumns(flags.output) : null;
  const objects = opts.api
    ? selectObjects(await listThroughApi(opts.api), filters)
    : selectVms((await withStore(opts, (store) => store.vms.list())).vms, filters);
  if (opts.json) return printJson(ctx.io, vmJson(objects, columns));
  const cols = columns ?? DEFAULT_VM_COLUMNS;
  ctx.io.stdout.write(formatTable(cols, vmRows(objects, cols), { header: flags.header }));
}

export async function getAction(ctx: CliContext, ref: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  if (opts.api) return printJson(ctx.io, await getThroughApi(opts.api, ref));
  const found = await withStore(opts, (store) => resolveVm(store.vms, ref));
  try {
    printJson(ctx.io, JSON.parse(found.raw));
  } catch {
    printLine(ctx.io, found.raw); // not JSON: show it as stored rather than hide it
  }
}

/** What a successful `--wait` reports, per action. */
const REACHED: Readonly<Record<VmAction, string>> = { start: 'is running', stop: 'is stopped', restart: 'is running', delete: 'is deleted' };

export async function changeAction(ctx: CliContext, action: VmAction, ref: string, flags: ChangeFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const wait = waitSeconds(flags.wait);
  const result = opts.api
    ? await changeThroughApi(opts.api, action, ref, flags.force === true, wait)
    : await withStore(opts, (store) =>
        changeStatus(store, { action, ref, force: flags.force === true, waitSeconds: wait, onProgress: (line) => printProgress(ctx.io, line) }),
      );
  if (opts.json) return printJson(ctx.io, result.record ?? { uuid: result.uuid, deleted: true });
  const { plan, label } = result;
  if (wait !== null) return printLine(ctx.io, `VM ${label} ${REACHED[action]}.`);
  if (plan.kind === 'noop') return printLine(ctx.io, `VM ${label} ${plan.reason}.`);
  printLine(ctx.io, `VM ${label}: ${plan.status}${plan.forceStop ? ' (forced)' : ''}.`);
}

export interface MigrateFlags extends GlobalFlags {
  to: string;
  wait?: number | boolean;
}

export async function migrateAction(ctx: CliContext, ref: string, flags: MigrateFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const wait = waitSeconds(flags.wait);
  const result = await withStore(opts, (store) =>
    migrateVm(store, { ref, to: flags.to, waitSeconds: wait, onProgress: (line) => printProgress(ctx.io, line) }),
  );
  if (opts.json) return printJson(ctx.io, result.record ?? { uuid: result.uuid });
  const { plan, label } = result;
  if (plan.kind === 'noop') return printLine(ctx.io, `VM ${label} ${plan.reason}.`);
  if (plan.kind === 'cold') return printLine(ctx.io, `VM ${label} is not running; moved it to ${flags.to} (it starts there when started).`);
  if (wait !== null) return printLine(ctx.io, `VM ${label} was migrated live to ${flags.to}.`);
  printLine(ctx.io, `VM ${label}: REQUESTED_MIGRATE to ${flags.to}.`);
}

export async function logAction(ctx: CliContext, ref: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const log = await withStore(opts, (store) => readVmLog(store, ref));
  if (opts.json) printJson(ctx.io, { uuid: log.uuid, log: log.log, events: log.events });
  else ctx.io.stdout.write(formatVmLog(log));
}
