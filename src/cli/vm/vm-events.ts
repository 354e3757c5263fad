/**
 * `drover vm events [-f] [VM]`: the cluster event log `P/log/` oldest first,
 * optionally narrowed to one VM, a minimum level, a start time or the last N
 * events; with `-f`, then every new event as it is written (a watch from the
 * revision the listing was read at, so nothing is missed or printed twice)
 * until Ctrl-C. `--json` prints one JSON object per line (NDJSON).
 */
import type { EventLevel } from '../../contract/event.js';
import { parseDuration } from '../../lib/duration.js';
import { DroverError } from '../../lib/errors.js';
import type { StoredEvent } from '../../store/event-log.js';
import type { StoredVm } from '../../store/vm-repository.js';
import type { CliContext } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { catchInterrupt, type Interrupt } from '../interrupt.js';
import { withStore, type StoreSession } from '../store-session.js';
import { selectVm } from '../../vm-ops/resolve-vm.js';
import { eventLine } from './vm-log.js';
import { levelRank, matchesEvent, type EventFilter } from './event-filter.js';
import { vmName } from '../../vm-ops/vm-view.js';

export interface EventsFlags extends GlobalFlags {
  follow?: boolean;
  level?: EventLevel;
  lines?: number;
  since?: string;
}

/** `--since`: an ISO time, or an age like `90s`, `10m`, `2h`, `1d` before `now`. */
export function parseSince(text: string, now: Date): Date {
  const age = parseDuration(text);
  if (age !== null) return new Date(now.getTime() - age * 1000);
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new DroverError('USAGE', `Option --since ${JSON.stringify(text)} must be an ISO time (2026-11-22T09:00:00Z) or an age like 10m, 2h or 1d.`);
  return new Date(t);
}

const FULL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The VM's uuid: a full uuid is taken as it is (a deleted VM's events stay in the log), else resolved. */
function vmUuid(vms: readonly StoredVm[], ref: string): string {
  return FULL_UUID.test(ref.trim()) ? ref.trim().toLowerCase() : selectVm(vms, ref).uuid;
}


export async function eventsAction(ctx: CliContext, ref: string | undefined, flags: EventsFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const since = flags.since !== undefined ? parseSince(flags.since, new Date()) : null;
  // Ctrl-C is ours from the start, so one pressed while the log is still being read also exits 0.
  const interrupt = flags.follow === true ? catchInterrupt() : null;
  try {
    if (opts.api) {
      const { showEventsThroughApi } = await import('./vm-events-api.js');
      await showEventsThroughApi(opts.api, {
        ref,
        filter: { minLevel: levelRank(flags.level ?? 'info'), since },
        lines: flags.lines,
        interrupt,
        print: (e, label) => void ctx.io.stdout.write(opts.json ? `${JSON.stringify(e)}\n` : `${eventLine(e, ref === undefined ? (label ?? '-') : undefined)}\n`),
      });
    } else await withStore(opts, (store) => showEvents(ctx, store, ref, flags, { since, json: opts.json, interrupt }));
  } finally {
    interrupt?.dispose();
  }
}

interface ShowOptions {
  since: Date | null;
  json: boolean;
  /** Present with -f. */
  interrupt: Interrupt | null;
}

async function showEvents(ctx: CliContext, store: StoreSession, ref: string | undefined, flags: EventsFlags, o: ShowOptions): Promise<void> {
  const { vms } = await store.vms.list();
  const filter: EventFilter = { minLevel: levelRank(flags.level ?? 'info'), since: o.since, ...(ref !== undefined ? { vm: vmUuid(vms, ref) } : {}) };
  const names = new Map(vms.map((v) => [v.uuid, vmName(v) ?? v.uuid]));
  const print = (e: StoredEvent, label?: string) =>
    ctx.io.stdout.write(o.json ? `${JSON.stringify(e)}\n` : `${eventLine(e, ref === undefined ? (label ?? '-') : undefined)}\n`);

  const { events, revision } = await store.events.listWithRevision(filter.vm !== undefined ? { vm: filter.vm } : {});
  const shown = events.filter((e) => matchesEvent(e, filter));
  for (const e of flags.lines !== undefined ? shown.slice(Math.max(0, shown.length - flags.lines)) : shown) print(e, e.vm ? names.get(e.vm) ?? e.vm : undefined);
  if (o.interrupt && !o.interrupt.signal.aborted) await follow(store, revision, filter, names, print, o.interrupt);
}

async function follow(
  store: StoreSession,
  revision: string,
  filter: EventFilter,
  names: Map<string, string>,
  print: (e: StoredEvent, label?: string) => void,
  interrupt: Interrupt,
): Promise<void> {
  let broken: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (broken = reject));
  // Names of VMs created after the listing are looked up in order, so lines never overtake each other.
  let queue = Promise.resolve();
  const label = async (uuid: string | undefined): Promise<string | undefined> => {
    if (uuid === undefined) return undefined;
    if (!names.has(uuid)) {
      const vm = await store.vms.get(uuid).catch(() => null);
      names.set(uuid, (vm && vmName(vm)) ?? uuid);
    }
    return names.get(uuid);
  };
  const watch = await store.events.follow(revision, {
    onEvent: (e) => {
      if (!matchesEvent(e, filter)) return;
      queue = queue.then(async () => print(e, await label(e.vm)));
    },
    onBroken: (reason) => broken(new DroverError('ETCD_UNAVAILABLE', `The event watch stopped: ${reason}; run the command again.`)),
  });
  try {
    await Promise.race([interrupt.done, failed]);
    await queue;
  } finally {
    await watch.close();
  }
}
