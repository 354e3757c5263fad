/**
 * Hosts: status, load, memory free and reserved, running VMs, and for
 * operators and admins a drain action (the scheduler then places no new VM
 * there; `drover host drain --move` moves the VMs off).
 */
import { useState } from 'react';
import { useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { SimpleTable } from './SimpleTable';
import { api, ApiError, type Host, type Session, type Vm } from '../api';
import { VMS_KEY } from '../live';
import { fetchAllVms } from './Machines';

interface HostPoint {
  load?: [number, number, number];
  memory?: { total_bytes: number; available_bytes: number };
}

const gib = (b: number | undefined): string => (b === undefined ? '—' : `${(b / 1073741824).toFixed(1)} GiB`);

export function HostsPage({ session }: { session: Session }) {
  const client = useQueryClient();
  const hosts = useQuery({ queryKey: ['hosts'], queryFn: () => api<{ items: Host[] }>('GET', '/api/v1/hosts'), retry: false });
  const vms = useQuery({ queryKey: VMS_KEY, queryFn: fetchAllVms });
  const names = (hosts.data?.items ?? []).map((h) => h.name);
  // The newest report of each host, re-read each 10 s.
  const stats = useQueries({
    queries: names.map((name) => ({ queryKey: ['host-stats', name], queryFn: () => api<{ points: HostPoint[] }>('GET', `/api/v1/hosts/${name}/stats?points=1`), refetchInterval: 10_000, retry: false })),
  });
  const [error, setError] = useState('');
  const canDrain = session.role === 'admin' || session.role === 'operator';
  const count = (name: string): number => (vms.data ?? []).filter((v: Vm) => v.host === name && v.status === 'RUNNING').length;
  const drain = async (name: string, drained: boolean): Promise<void> => {
    setError('');
    try {
      await api('POST', `/api/v1/hosts/${name}/${drained ? 'drain' : 'undrain'}`);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
    void client.invalidateQueries({ queryKey: ['hosts'] });
  };
  return (
    <section aria-labelledby="hosts-title">
      <h1 id="hosts-title">Hosts</h1>
      {hosts.isError && <p className="error">{(hosts.error as Error).message}</p>}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {hosts.data && (
        <SimpleTable columns={['Name', 'Status', 'Load (1 min)', 'Memory free / total', 'Reserved', 'Running VMs', 'Accelerator', ...(canDrain ? [''] : [])]}>
            {hosts.data.items.map((h, i) => {
              const p = stats[i]?.data?.points.at(-1);
              const drained = h.drained === true;
              return (
                <tr key={h.name}>
                  <td>{h.name}</td>
                  <td>
                    <span className={`badge badge-${h.status === 'ALIVE' ? 'ok' : 'bad'}`}>{h.status ?? '—'}</span> {drained && <span className="badge badge-busy">DRAINED</span>}
                  </td>
                  <td>{p?.load ? p.load[0].toFixed(2) : '—'}</td>
                  <td>
                    {gib(p?.memory?.available_bytes)} / {gib(p?.memory?.total_bytes)}
                  </td>
                  <td>{typeof h.reserved_memory === 'number' ? `${h.reserved_memory} MiB` : '—'}</td>
                  <td>{count(h.name)}</td>
                  <td>{h.accel ?? '—'}</td>
                  {canDrain && (
                    <td>
                      <button type="button" onClick={() => void drain(h.name, !drained)}>
                        {drained ? 'Undrain' : 'Drain'}
                      </button>
                    </td>
                  )}
                </tr>
              );
            })}
          </SimpleTable>
      )}
      {session.role === 'user' && <p className="hint">Running VMs counts only yours.</p>}
    </section>
  );
}
