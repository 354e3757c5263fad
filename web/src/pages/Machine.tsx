/**
 * One machine: what it is (spec, host, owner, disks, NICs), its actions
 * (offered only when the role allows them), its snapshots and backups, and
 * its consoles. The record stays current through the live stream (live.ts);
 * the console libraries load only when a console tab opens.
 */
import { lazy, Suspense, useState, type FormEvent } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, ApiError, may, type DroverEvent, type Session, type Vm } from '../api';
import { StatusBadge } from './StatusBadge';
import { MachineCharts, MachineHistory } from './MachineActivity';

const VncConsole = lazy(() => import('../consoles/VncConsole'));
const SerialConsole = lazy(() => import('../consoles/SerialConsole'));

type Tab = 'overview' | 'activity' | 'history' | 'vnc' | 'serial';

const TAB_LABELS: Readonly<Record<Tab, string>> = { overview: 'Overview', activity: 'Activity', history: 'History', vnc: 'Screen (VNC)', serial: 'Serial console' };

function useAction(uuid: string): { run: (method: string, path: string, body?: unknown) => Promise<void>; error: string; busy: boolean } {
  const client = useQueryClient();
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const run = async (method: string, path: string, body?: unknown): Promise<void> => {
    setBusy(true);
    setError('');
    try {
      await api(method, path, body);
      void client.invalidateQueries({ queryKey: ['vm', uuid] });
      void client.invalidateQueries({ queryKey: ['backups', uuid] });
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return { run, error, busy };
}

function Snapshots({ vm, session }: { vm: Vm; session: Session }) {
  const { run, error, busy } = useAction(vm.uuid);
  const [name, setName] = useState('');
  const base = `/api/v1/vms/${vm.uuid}/snapshots`;
  const create = (e: FormEvent): void => {
    e.preventDefault();
    void run('POST', base, { name }).then(() => setName(''));
  };
  return (
    <section aria-labelledby="snap-title" className="card">
      <h2 id="snap-title">Snapshots</h2>
      {(vm.snapshots ?? []).length === 0 ? (
        <p className="hint">No snapshots.</p>
      ) : (
        <ul className="plain">
          {vm.snapshots!.map((s) => (
            <li key={s.name}>
              <strong>{s.name}</strong> <small>{s.created_at}</small>
              {may(session.role, 'snapshot') && (
                <>
                  <button type="button" disabled={busy} onClick={() => void run('POST', `${base}/${encodeURIComponent(s.name)}/rollback`)}>
                    Roll back
                  </button>
                  <button type="button" className="danger" disabled={busy} onClick={() => void run('DELETE', `${base}/${encodeURIComponent(s.name)}`)}>
                    Delete
                  </button>
                </>
              )}
            </li>
          ))}
        </ul>
      )}
      {may(session.role, 'snapshot') && (
        <form onSubmit={create} className="inline">
          <label>
            New snapshot
            <input value={name} onChange={(e) => setName(e.target.value)} required pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}" placeholder="before-upgrade" />
          </label>
          <button type="submit" disabled={busy}>
            Take snapshot
          </button>
        </form>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function Backups({ vm, session }: { vm: Vm; session: Session }) {
  const { run, error, busy } = useAction(vm.uuid);
  const list = useQuery({ queryKey: ['backups', vm.uuid], queryFn: () => api<{ backups: Array<{ id: string; name: string; created_at: string; size: number }> }>('GET', `/api/v1/vms/${vm.uuid}/backups`), retry: false });
  const req = vm.backup_request as { op?: string; state?: string; error?: string; progress?: { what: string; done: number; total: number } } | undefined;
  return (
    <section aria-labelledby="backup-title" className="card">
      <h2 id="backup-title">Backups</h2>
      {list.isError && <p className="hint">{(list.error as Error).message}</p>}
      {req && (
        <p className={req.state === 'failed' ? 'error' : 'hint'}>
          Last {req.op}: {req.state}
          {req.progress && req.state === 'running' ? ` (${req.progress.what}: ${Math.round((100 * req.progress.done) / Math.max(1, req.progress.total))}%)` : ''}
          {req.error ? ` — ${req.error}` : ''}
        </p>
      )}
      <ul className="plain">
        {(list.data?.backups ?? []).map((b) => (
          <li key={b.id}>
            <strong>{b.name}</strong> <small>{b.created_at}, {(b.size / 1048576).toFixed(1)} MiB</small>
            {may(session.role, 'backup') && (
              <button type="button" disabled={busy || vm.status === 'RUNNING'} title={vm.status === 'RUNNING' ? 'Stop the machine to restore' : undefined} onClick={() => void run('POST', `/api/v1/vms/${vm.uuid}/backups/${b.id}/restore`)}>
                Restore
              </button>
            )}
          </li>
        ))}
      </ul>
      {may(session.role, 'backup') && !list.isError && (
        <button type="button" disabled={busy} onClick={() => void run('POST', `/api/v1/vms/${vm.uuid}/backups`, {})}>
          Back up now
        </button>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

/** The machine's newest events (its agent's and the API's), newest first. */
function MachineEvents({ uuid }: { uuid: string }) {
  const events = useQuery({ queryKey: ['vm-events', uuid], queryFn: () => api<{ items: DroverEvent[] }>('GET', `/api/v1/events?vm=${uuid}&limit=12`), refetchInterval: 15_000 });
  return (
    <section className="card" aria-labelledby="vm-events-title">
      <h2 id="vm-events-title">Events</h2>
      {events.isError && <p className="error">{(events.error as Error).message}</p>}
      <ol className="log">
        {[...(events.data?.items ?? [])].reverse().map((e, i) => (
          <li key={`${e.ts}-${i}`}>
            <time dateTime={e.ts}>{new Date(e.ts).toLocaleTimeString()}</time> {e.event}: {e.message}
          </li>
        ))}
      </ol>
    </section>
  );
}

export function MachinePage({ uuid, session }: { uuid: string; session: Session }) {
  const vm = useQuery({ queryKey: ['vm', uuid], queryFn: () => api<Vm>('GET', `/api/v1/vms/${uuid}`) });
  const [tab, setTab] = useState<Tab>('overview');
  const { run, error, busy } = useAction(uuid);
  if (vm.isError) return <p className="error">{(vm.error as Error).message}</p>;
  if (!vm.data) return <p className="loading">Loading…</p>;
  const v = vm.data;
  const power = may(session.role, 'power');
  const act = (a: string) => (
    <button type="button" disabled={busy} className={a === 'delete' ? 'danger' : ''} onClick={() => void run(a === 'delete' ? 'DELETE' : 'POST', a === 'delete' ? `/api/v1/vms/${uuid}` : `/api/v1/vms/${uuid}/${a}`).then(() => a === 'delete' && (location.hash = '#/'))}>
      {a[0]!.toUpperCase() + a.slice(1)}
    </button>
  );
  return (
    <section aria-labelledby="vm-title">
      <p>
        <a href="#/">← Machines</a>
      </p>
      <div className="page-head">
        <h1 id="vm-title">{v.name}</h1>
        <StatusBadge status={v.status} />
        {power && (
          <span className="actions">
            {v.status !== 'RUNNING' && act('start')}
            {v.status === 'RUNNING' && act('stop')}
            {v.status === 'RUNNING' && act('restart')}
            {act('delete')}
          </span>
        )}
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {v.error && <p className="error">{v.error}</p>}
      <div className="tabs" role="tablist" aria-label="Machine views">
        {(['overview', 'activity', 'history', 'vnc', 'serial'] as const).map((t) => (
          <button key={t} type="button" role="tab" aria-selected={tab === t} onClick={() => setTab(t)} disabled={(t === 'vnc' || t === 'serial') && (!may(session.role, 'console') || v.status !== 'RUNNING')}>
            {TAB_LABELS[t]}
          </button>
        ))}
      </div>
      {tab === 'overview' && (
        <div className="grid">
          <section className="card" aria-labelledby="spec-title">
            <h2 id="spec-title">Machine</h2>
            <dl>
              <dt>UUID</dt>
              <dd>
                <code>{v.uuid}</code>
              </dd>
              <dt>Host</dt>
              <dd>{v.host || 'not placed yet'}</dd>
              <dt>Owner</dt>
              <dd>{v.owner ?? '—'}</dd>
              <dt>vCPUs</dt>
              <dd>{v.spec.vcpus ?? 1}</dd>
              <dt>Memory</dt>
              <dd>{v.spec.memory ?? 0} MiB</dd>
              <dt>Running since</dt>
              <dd>{v.status === 'RUNNING' ? (v.runtime?.started_at ?? '—') : '—'}</dd>
            </dl>
            <h3>Disks</h3>
            <ul className="plain">
              {(v.spec.disks ?? []).map((d, i) => (
                <li key={i}>
                  {d.image ? `image ${d.image}` : d.rbd ? `rbd ${d.rbd}` : d.path}
                  {d.size ? `, ${d.size} MiB` : ''}
                </li>
              ))}
              {(v.spec.disks ?? []).length === 0 && <li className="hint">No disks (boots a kernel).</li>}
            </ul>
            <h3>Network</h3>
            <ul className="plain">
              {(v.spec.nics ?? []).map((n, i) => (
                <li key={i}>
                  {n.network ?? n.bridge} {n.ip ?? ''} <small>{n.mac ?? ''}</small>
                </li>
              ))}
              {(v.spec.nics ?? []).length === 0 && <li className="hint">No NICs.</li>}
            </ul>
          </section>
          <Snapshots vm={v} session={session} />
          <Backups vm={v} session={session} />
          <MachineEvents uuid={v.uuid} />
          <section className="card" aria-labelledby="log-title">
            <h2 id="log-title">Log</h2>
            <ol className="log">
              {(v.log ?? []).slice(-12).map((l, i) => (
                <li key={i}>{l}</li>
              ))}
            </ol>
          </section>
        </div>
      )}
      {tab === 'activity' && <MachineCharts uuid={uuid} />}
      {tab === 'history' && <MachineHistory uuid={uuid} />}
      <Suspense fallback={<p className="loading">Loading the console…</p>}>
        {tab === 'vnc' && <VncConsole uuid={uuid} />}
        {tab === 'serial' && <SerialConsole uuid={uuid} />}
      </Suspense>
    </section>
  );
}
