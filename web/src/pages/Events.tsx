/** Events: the newest first, live from the stream (live.ts), filterable by text. */
import { useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { SimpleTable } from './SimpleTable';
import { api, type DroverEvent } from '../api';
import { EVENTS_KEY } from '../live';

export function EventsPage() {
  const events = useQuery({ queryKey: EVENTS_KEY, queryFn: async () => (await api<{ items: DroverEvent[] }>('GET', '/api/v1/events?limit=200')).items.reverse() });
  const [filter, setFilter] = useState('');
  const shown = (events.data ?? []).filter((e) => `${e.event} ${e.level} ${e.host} ${e.message} ${e.requestor ?? ''}`.toLowerCase().includes(filter.toLowerCase()));
  return (
    <section aria-labelledby="events-title">
      <div className="page-head">
        <h1 id="events-title">Events</h1>
        <label className="search">
          <span className="sr-only">Filter events</span>
          <input type="search" placeholder="Filter: vm.started, error, alice…" value={filter} onChange={(e) => setFilter(e.target.value)} />
        </label>
      </div>
      {events.isError && <p className="error">{(events.error as Error).message}</p>}
      <SimpleTable columns={['Time', 'Level', 'Event', 'Where', 'What']}>
          {shown.map((e, i) => (
            <tr key={`${e.ts}-${i}`}>
              <td>
                <time dateTime={e.ts}>{new Date(e.ts).toLocaleTimeString()}</time>
              </td>
              <td>
                <span className={`badge badge-${e.level === 'error' ? 'bad' : e.level === 'warn' ? 'busy' : 'idle'}`}>{e.level}</span>
              </td>
              <td>{e.event}</td>
              <td>{e.host}</td>
              <td>{e.message}</td>
            </tr>
          ))}
        </SimpleTable>
    </section>
  );
}
