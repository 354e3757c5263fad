/**
 * `drover vm events [-f]` through the HTTP API (`--api`): the listing from
 * GET /api/v1/events, then with -f the server-sent event stream from the
 * revision the listing was read at, so nothing is missed or printed twice.
 * The API shows only what the caller may see.
 */
import { DroverError } from '../../lib/errors.js';
import type { StoredEvent } from '../../store/event-log.js';
import type { JsonObject } from '../../store/vm-repository.js';
import { apiRequest, apiUrl, type ApiTarget } from '../api-client.js';
import type { Interrupt } from '../interrupt.js';
import { matchesEvent, type EventFilter } from './event-filter.js';
import { listThroughApi } from './vm-through-api.js';

const FULL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function resolveRef(vms: readonly JsonObject[], ref: string): string {
  const word = ref.trim().toLowerCase();
  if (FULL_UUID.test(word)) return word;
  const hits = vms.filter((v) => v.name === ref.trim() || (word.length >= 4 && String(v.uuid).startsWith(word)));
  if (hits.length === 1) return String(hits[0]?.uuid);
  if (hits.length > 1) throw new DroverError('AMBIGUOUS', `${JSON.stringify(ref)} matches ${hits.length} VMs; give more of the uuid.`);
  throw new DroverError('NOT_FOUND', `No VM matches ${JSON.stringify(ref)}.`);
}

export interface ApiEventsRequest {
  ref?: string;
  filter: Omit<EventFilter, 'vm'>;
  lines?: number;
  interrupt: Interrupt | null;
  print(e: StoredEvent, label?: string): void;
}

export async function showEventsThroughApi(api: ApiTarget, req: ApiEventsRequest): Promise<void> {
  const vms = await listThroughApi(api);
  const names = new Map(vms.map((v) => [String(v.uuid), typeof v.name === 'string' ? v.name : String(v.uuid)]));
  const filter: EventFilter = { ...req.filter, ...(req.ref !== undefined ? { vm: resolveRef(vms, req.ref) } : {}) };
  const query = `/api/v1/events?limit=10000${filter.vm ? `&vm=${filter.vm}` : ''}`;
  const { data } = await apiRequest<{ items: StoredEvent[]; revision: string }>(api, 'GET', query);
  const shown = data.items.filter((e) => matchesEvent(e, filter));
  for (const e of req.lines !== undefined ? shown.slice(Math.max(0, shown.length - req.lines)) : shown) req.print(e, e.vm ? (names.get(e.vm) ?? e.vm) : undefined);
  if (req.interrupt && !req.interrupt.signal.aborted) await followThroughApi(api, data.revision, filter, names, req);
}

async function followThroughApi(api: ApiTarget, since: string, filter: EventFilter, names: Map<string, string>, req: ApiEventsRequest): Promise<void> {
  const signal = req.interrupt?.signal;
  let res: Response;
  try {
    res = await fetch(apiUrl(api, `/api/v1/events?since=${since}${filter.vm ? `&vm=${filter.vm}` : ''}`), {
      redirect: 'error',
      headers: { Authorization: `Bearer ${api.token}`, Accept: 'text/event-stream' },
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    if (signal?.aborted) return;
    throw new DroverError('ETCD_UNAVAILABLE', `The API at ${api.url} cannot be reached (${(err as Error).message}).`, true);
  }
  if (!res.ok || !res.body) throw new DroverError('ETCD_UNAVAILABLE', `The API refused the event stream (${res.status}).`);
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const type = /^event: (.*)$/m.exec(message)?.[1];
        const data = message
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        if (type === 'error') throw new DroverError('ETCD_UNAVAILABLE', `The event stream stopped: ${(JSON.parse(data) as { error: string }).error}`);
        if (type !== 'log') continue;
        const e = JSON.parse(data) as StoredEvent;
        if (matchesEvent(e, filter)) req.print(e, e.vm ? (names.get(e.vm) ?? e.vm) : undefined);
      }
    }
  } catch (err) {
    if (signal?.aborted) return;
    throw err;
  }
}
