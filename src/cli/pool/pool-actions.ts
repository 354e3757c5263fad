/**
 * What the `drover pool` commands do; loaded on demand by commands/pool.ts.
 * Pool records are written with compare-and-swap, keeping the scheduler's
 * `status`; `pool delete` removes the record first, so the scheduler (whose
 * creations compare the pool record's revision) can create no VM after it,
 * then deletes the pool's VMs unless told to keep them.
 */
import { appendLog } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import { PoolRepository, type StoredPool } from '../../store/pool-repository.js';
import { rawObject, type JsonObject, type StoredVm } from '../../store/vm-repository.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { formatCell } from '../output/fields.js';
import { printJson, printLine } from '../output/print.js';
import { formatTable } from '../output/table.js';
import { readJsonInput } from '../read-input.js';
import { withStore, type StoreSession } from '../store-session.js';
import { preparePoolRecord } from '../../vm-ops/prepare-pool.js';

export interface CreateFlags extends GlobalFlags {
  file: string;
  replace?: boolean;
}

export interface ListFlags extends GlobalFlags {
  header: boolean;
}

export interface DeleteFlags extends GlobalFlags {
  keepVms?: boolean;
}

const ATTEMPTS = 10;

export async function createAction(ctx: CliContext, flags: CreateFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const record = preparePoolRecord(await readJsonInput(ctx.io, flags.file));
  const name = String(record.name);
  const result = await withStore(opts, async (store) => {
    const pools = new PoolRepository(store.kv, store.keys);
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const current = await pools.get(name);
      if (!current) {
        if (await pools.create(name, record)) return { verb: 'created', written: record };
        continue;
      }
      if (flags.replace !== true) throw new DroverError('CONFLICT', `A pool named ${name} exists; use --replace to change it.`);
      const status = rawObject(current.raw)?.status;
      const next = status === undefined ? record : { ...record, status };
      if (await pools.replace(current, next)) return { verb: 'replaced', written: next };
    }
    throw new DroverError('CONFLICT', `Pool ${name} kept changing under ${ATTEMPTS} attempts to write it; try again.`, true);
  });
  if (opts.json) printJson(ctx.io, result.written);
  else printLine(ctx.io, `Pool ${name} ${result.verb}.`);
}

/** One line of `pool list`. */
interface PoolRow {
  name: string;
  count: number | null;
  target_share: number | null;
  target: number | null;
  running: number;
  vms: number;
  backoff_until: string | null;
  error: string | null;
}

export function poolRows(pools: readonly StoredPool[], vms: readonly StoredVm[], now: number): PoolRow[] {
  const byPool = new Map<string, { running: number; vms: number }>();
  for (const vm of vms) {
    const obj = vm.parsed.ok ? (vm.parsed.value as JsonObject) : rawObject(vm.raw);
    if (typeof obj?.pool !== 'string') continue;
    const n = byPool.get(obj.pool) ?? { running: 0, vms: 0 };
    n.vms++;
    if (obj.status === 'RUNNING') n.running++;
    byPool.set(obj.pool, n);
  }
  return [...pools]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((p) => {
      const n = byPool.get(p.name) ?? { running: 0, vms: 0 };
      const rec = p.parsed.ok ? p.parsed.value : null;
      const status = rec?.status;
      const until = status?.backoff_until;
      return {
        name: p.name,
        count: rec?.count ?? null,
        target_share: rec?.target_share ?? null,
        target: status?.target ?? rec?.count ?? null,
        running: n.running,
        vms: n.vms,
        backoff_until: until !== undefined && Date.parse(until) > now ? until : null,
        error: p.parsed.ok ? (status?.error ?? null) : p.parsed.error,
      };
    });
}

const COLUMNS = ['name', 'size', 'target', 'running', 'vms', 'backoff_until', 'error'];

export async function listAction(ctx: CliContext, flags: ListFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const { pools, vms } = await withStore(opts, async (store) => ({
    pools: await new PoolRepository(store.kv, store.keys).list(),
    vms: (await store.vms.list()).vms,
  }));
  const rows = poolRows(pools, vms, Date.now());
  if (opts.json) return printJson(ctx.io, rows);
  const size = (r: PoolRow) => (r.count !== null ? String(r.count) : r.target_share !== null ? `${Math.round(r.target_share * 1000) / 10}%` : null);
  const cells = rows.map((r) => [r.name, size(r), r.target, r.running, r.vms, r.backoff_until, r.error].map(formatCell));
  ctx.io.stdout.write(formatTable(COLUMNS, cells, { header: flags.header }));
}

export async function getAction(ctx: CliContext, name: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const found = await withStore(opts, (store) => new PoolRepository(store.kv, store.keys).get(name));
  if (!found) throw new DroverError('NOT_FOUND', `No pool is named ${JSON.stringify(name)}.`);
  const obj = rawObject(found.raw);
  if (obj) printJson(ctx.io, obj);
  else printLine(ctx.io, found.raw); // not a JSON object: show it as stored rather than hide it
}

export async function deleteAction(ctx: CliContext, name: string, flags: DeleteFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const keep = flags.keepVms === true;
  const uuids = await withStore(opts, async (store) => {
    await deletePoolRecord(new PoolRepository(store.kv, store.keys), name);
    const members = (await store.vms.list()).vms.filter((v) => (v.parsed.ok ? v.parsed.value.pool : rawObject(v.raw)?.pool) === name);
    if (!keep) for (const vm of members) await deletePoolVm(store, vm, name);
    return members.map((v) => v.uuid);
  });
  if (opts.json) return printJson(ctx.io, { name, deleted: true, vms: uuids, kept_vms: keep });
  const n = `${uuids.length} VM${uuids.length === 1 ? '' : 's'}`;
  printLine(ctx.io, keep ? `Pool ${name} deleted; its ${n} keep running and are no longer replaced.` : `Pool ${name} deleted; its ${n} ${uuids.length === 1 ? 'is' : 'are'} being deleted.`);
}

async function deletePoolRecord(pools: PoolRepository, name: string): Promise<void> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const current = await pools.get(name);
    if (!current) throw new DroverError('NOT_FOUND', `No pool is named ${JSON.stringify(name)}.`);
    if (await pools.deleteIf(current)) return;
  }
  throw new DroverError('CONFLICT', `Pool ${name} kept changing under ${ATTEMPTS} attempts to delete it; try again.`, true);
}

/** A VM no host holds has no agent to clean up after it: its key goes at once; the others get REQUESTED_DELETE. */
async function deletePoolVm(store: StoreSession, vm: StoredVm, pool: string): Promise<void> {
  await store.vms.update(vm.uuid, (current) => {
    const obj = rawObject(current.raw);
    if (!obj || obj.status === 'REQUESTED_DELETE') return null;
    if (typeof obj.host !== 'string' || obj.host === '') return 'delete';
    const log = Array.isArray(obj.log) ? obj.log.filter((l): l is string => typeof l === 'string') : [];
    return { ...obj, status: 'REQUESTED_DELETE', log: appendLog(log, `deleted with pool ${pool}`, new Date()) };
  });
}
