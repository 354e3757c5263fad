/** Hosts: status, memory, CPUs and how many VMs each runs. */
import { useQuery } from '@tanstack/react-query';
import { api, type Host, type Session, type Vm } from '../api';
import { VMS_KEY } from '../live';
import { fetchAllVms } from './Machines';

export function HostsPage({ session }: { session: Session }) {
  const hosts = useQuery({ queryKey: ['hosts'], queryFn: () => api<{ items: Host[] }>('GET', '/api/v1/hosts'), retry: false });
  const vms = useQuery({ queryKey: VMS_KEY, queryFn: fetchAllVms });
  const count = (name: string): number => (vms.data ?? []).filter((v: Vm) => v.host === name && v.status === 'RUNNING').length;
  return (
    <section aria-labelledby="hosts-title">
      <h1 id="hosts-title">Hosts</h1>
      {hosts.isError && <p className="error">{(hosts.error as Error).message}</p>}
      {hosts.data && (
        <table className="simple">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">CPUs</th>
              <th scope="col">Memory (MiB)</th>
              <th scope="col">Accelerator</th>
              <th scope="col">Running VMs</th>
            </tr>
          </thead>
          <tbody>
            {hosts.data.items.map((h) => (
              <tr key={h.name}>
                <td>{h.name}</td>
                <td>
                  <span className={`badge badge-${h.status === 'ALIVE' ? 'ok' : 'bad'}`}>{h.status ?? '—'}</span>
                </td>
                <td>{h.cpus ?? '—'}</td>
                <td>{h.memory ?? '—'}</td>
                <td>{h.accel ?? '—'}</td>
                <td>{count(h.name)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {session.role === 'user' && <p className="hint">Running VMs counts only yours.</p>}
    </section>
  );
}
