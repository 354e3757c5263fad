/**
 * The API's event stream (GET /api/v1/events, server-sent events) feeding
 * the query cache: each `vm` message replaces that VM in the machines list
 * and its page, each `log` message is prepended to the events. EventSource
 * reconnects by itself and sends Last-Event-ID, so nothing between is
 * missed; the state says when it is away.
 */
import { useEffect, useState } from 'react';
import type { QueryClient } from '@tanstack/react-query';
import type { DroverEvent, Vm } from './api';

export type LiveState = 'connecting' | 'live' | 'away';

export const VMS_KEY = ['vms'] as const;
export const EVENTS_KEY = ['events'] as const;

export function useLiveStream(client: QueryClient): LiveState {
  const [state, setState] = useState<LiveState>('connecting');
  useEffect(() => {
    const source = new EventSource('/api/v1/events', { withCredentials: true });
    source.onopen = () => {
      setState('live');
      // Whatever changed while the stream was away: read the list again.
      void client.invalidateQueries({ queryKey: VMS_KEY });
    };
    source.onerror = () => setState('away');
    source.addEventListener('vm', (e) => {
      const msg = JSON.parse((e as MessageEvent<string>).data) as { uuid: string; record: Vm | null };
      client.setQueryData<Vm[]>(VMS_KEY, (list) => {
        if (!list) return list;
        const rest = list.filter((v) => v.uuid !== msg.uuid);
        return msg.record ? [...rest, msg.record].sort((a, b) => a.name.localeCompare(b.name)) : rest;
      });
      client.setQueryData<Vm | null>(['vm', msg.uuid], () => msg.record);
    });
    source.addEventListener('log', (e) => {
      const ev = JSON.parse((e as MessageEvent<string>).data) as DroverEvent;
      client.setQueryData<DroverEvent[]>(EVENTS_KEY, (list) => (list ? [ev, ...list].slice(0, 500) : list));
    });
    return () => source.close();
  }, [client]);
  return state;
}
