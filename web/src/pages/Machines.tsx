/**
 * Machines: every VM the user may see, live (live.ts), with sort, a column
 * chooser, `field:value` search terms plus free text, and bulk power
 * actions behind a confirmation that names the machines. Only the rows in
 * view are rendered, so 10,000 VMs scroll smoothly.
 */
import { useMemo, useState, type UIEvent } from 'react';
import { useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, ApiError, may, type Session, type Vm } from '../api';
import { VMS_KEY } from '../live';
import { StatusBadge } from './StatusBadge';

const ROW = 38;

interface Column {
  key: string;
  label: string;
  value: (vm: Vm) => string | number;
  /** Measured figures of the rows in view (not sortable: only those rows have them). */
  live?: boolean;
}

/** "3d 4h", "2h 5m", "12m", "40s". */
function since(iso: string | undefined, now: number): string {
  if (!iso) return '';
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return s >= 60 ? `${Math.floor(s / 60)}m` : `${s}s`;
}

const COLUMNS: Column[] = [
  { key: 'name', label: 'Name', value: (v) => v.name },
  { key: 'status', label: 'Status', value: (v) => v.status ?? '' },
  { key: 'host', label: 'Host', value: (v) => v.host || '' },
  { key: 'owner', label: 'Owner', value: (v) => v.owner ?? '' },
  { key: 'vcpus', label: 'vCPUs', value: (v) => v.spec.vcpus ?? 1 },
  { key: 'memory', label: 'Memory (MiB)', value: (v) => v.spec.memory ?? 0 },
  { key: 'ip', label: 'IP', value: (v) => v.spec.nics?.find((n) => n.ip)?.ip ?? '' },
  { key: 'image', label: 'Image', value: (v) => v.spec.disks?.find((d) => d.image)?.image ?? '' },
  { key: 'pool', label: 'Pool', value: (v) => v.pool ?? '' },
  { key: 'uptime', label: 'Uptime', value: (v) => (v.status === 'RUNNING' ? (v.runtime?.started_at ?? '') : '') },
  { key: 'cpu', label: 'CPU', value: () => '', live: true },
  { key: 'rss', label: 'Memory use', value: () => '', live: true },
];

interface Usage {
  cpu_load?: number;
  rss_bytes?: number;
}

/** The newest figures of the running VMs in view, from their hosts' reports, re-read every 10 s. */
function useUsage(vms: readonly Vm[], wanted: boolean): Map<string, Usage> {
  const running = wanted ? vms.filter((v) => v.status === 'RUNNING') : [];
  const results = useQueries({
    queries: running.map((v) => ({
      queryKey: ['usage', v.uuid],
      queryFn: async () => (await api<{ points: Usage[] }>('GET', `/api/v1/vms/${v.uuid}/stats?points=1`)).points.at(-1) ?? {},
      staleTime: 10_000,
      refetchInterval: 10_000,
      retry: false,
    })),
  });
  const out = new Map<string, Usage>();
  running.forEach((v, i) => {
    const d = results[i]?.data;
    if (d) out.set(v.uuid, d);
  });
  return out;
}

function cell(c: Column, vm: Vm, usage: Usage | undefined, now: number): React.ReactNode {
  if (c.key === 'name') return <a href={`#/vm/${vm.uuid}`}>{vm.name}</a>;
  if (c.key === 'status') return <StatusBadge status={vm.status} />;
  if (c.key === 'uptime') return since(c.value(vm) as string, now);
  if (c.key === 'cpu') return usage?.cpu_load !== undefined ? `${Math.round(usage.cpu_load * 100)} %` : '';
  if (c.key === 'rss') return usage?.rss_bytes !== undefined ? `${Math.round(usage.rss_bytes / 1048576)} MiB` : '';
  return String(c.value(vm));
}

export async function fetchAllVms(): Promise<Vm[]> {
  const all: Vm[] = [];
  let cursor: string | null = null;
  do {
    const page: { items: Vm[]; next_cursor: string | null } = await api('GET', `/api/v1/vms?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    all.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return all;
}

/** `status:RUNNING host:hv1 web`: each field term must match (prefix, any case), the rest anywhere. */
export function matches(vm: Vm, query: string): boolean {
  for (const term of query.trim().split(/\s+/).filter(Boolean)) {
    const m = /^([a-z]+):(.*)$/i.exec(term);
    const col = m ? COLUMNS.find((c) => c.key === m[1]?.toLowerCase()) : undefined;
    if (m && col) {
      if (!String(col.value(vm)).toLowerCase().startsWith((m[2] ?? '').toLowerCase())) return false;
    } else if (!COLUMNS.some((c) => String(c.value(vm)).toLowerCase().includes(term.toLowerCase())) && !vm.uuid.startsWith(term)) {
      return false;
    }
  }
  return true;
}

type Action = 'start' | 'stop' | 'restart' | 'delete';

export function MachinesPage({ session }: { session: Session }) {
  const client = useQueryClient();
  const vms = useQuery({ queryKey: VMS_KEY, queryFn: fetchAllVms });
  const [query, setQuery] = useState('');
  const [sort, setSort] = useState<{ key: string; desc: boolean }>({ key: 'name', desc: false });
  const [shown, setShown] = useState<string[]>(['name', 'status', 'host', 'owner', 'vcpus', 'memory', 'ip', 'uptime', 'cpu', 'rss']);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [confirm, setConfirm] = useState<Action | null>(null);
  const [error, setError] = useState('');
  const [scrollTop, setScrollTop] = useState(0);

  const rows = useMemo(() => {
    const col = COLUMNS.find((c) => c.key === sort.key) ?? COLUMNS[0]!;
    const list = (vms.data ?? []).filter((v) => matches(v, query));
    list.sort((a, b) => {
      const x = col.value(a);
      const y = col.value(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return sort.desc ? -c : c;
    });
    return list;
  }, [vms.data, query, sort]);

  const columns = COLUMNS.filter((c) => shown.includes(c.key));
  const first = Math.max(0, Math.floor(scrollTop / ROW) - 10);
  const visible = rows.slice(first, first + 40);
  const usage = useUsage(visible, shown.includes('cpu') || shown.includes('rss'));
  const now = Date.now();
  const chosen = (vms.data ?? []).filter((v) => selected.has(v.uuid));

  const run = async (action: Action): Promise<void> => {
    setConfirm(null);
    setError('');
    const failures: string[] = [];
    for (const vm of chosen) {
      try {
        if (action === 'delete') await api('DELETE', `/api/v1/vms/${vm.uuid}`);
        else await api('POST', `/api/v1/vms/${vm.uuid}/${action}`);
      } catch (err) {
        failures.push(`${vm.name}: ${err instanceof ApiError ? err.message : String(err)}`);
      }
    }
    setSelected(new Set());
    if (failures.length > 0) setError(failures.join(' '));
    void client.invalidateQueries({ queryKey: VMS_KEY });
  };

  const toggle = (uuid: string): void =>
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(uuid)) n.delete(uuid);
      else n.add(uuid);
      return n;
    });

  return (
    <section aria-labelledby="machines-title">
      <div className="page-head">
        <h1 id="machines-title">Machines</h1>
        <span className="count">{vms.data ? `${rows.length} of ${vms.data.length}` : ''}</span>
        {may(session.role, 'create') && (
          <a className="button primary" href="#/create">
            Create machine
          </a>
        )}
        <label className="search">
          <span className="sr-only">Search machines</span>
          <input type="search" placeholder="Search: status:RUNNING host:hv1 owner:alice web" value={query} onChange={(e) => setQuery(e.target.value)} />
        </label>
        <details className="columns">
          <summary>Columns</summary>
          <fieldset>
            <legend className="sr-only">Shown columns</legend>
            {COLUMNS.map((c) => (
              <label key={c.key}>
                <input type="checkbox" checked={shown.includes(c.key)} onChange={() => setShown((s) => (s.includes(c.key) ? s.filter((k) => k !== c.key) : [...s, c.key]))} />
                {c.label}
              </label>
            ))}
          </fieldset>
        </details>
      </div>
      {may(session.role, 'power') && (
        <div className="bulk" role="toolbar" aria-label="Actions on the selected machines">
          {(['start', 'stop', 'restart', 'delete'] as const).map((a) => (
            <button key={a} type="button" disabled={chosen.length === 0} className={a === 'delete' ? 'danger' : ''} onClick={() => setConfirm(a)}>
              {a[0]!.toUpperCase() + a.slice(1)}
            </button>
          ))}
          <span className="hint">{chosen.length > 0 ? `${chosen.length} selected` : 'Select machines to act on them.'}</span>
        </div>
      )}
      {confirm && (
        <div className="confirm" role="alertdialog" aria-labelledby="confirm-text">
          <p id="confirm-text">
            {confirm[0]!.toUpperCase() + confirm.slice(1)} {chosen.map((v) => v.name).join(', ')}?
          </p>
          <button type="button" className={confirm === 'delete' ? 'danger' : 'primary'} onClick={() => void run(confirm)} autoFocus>
            Yes, {confirm}
          </button>
          <button type="button" onClick={() => setConfirm(null)}>
            Cancel
          </button>
        </div>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {vms.isError && <p className="error">{(vms.error as Error).message}</p>}
      <div className="table" role="table" aria-label="Machines" aria-rowcount={rows.length + 1}>
        <div className="tr th" role="row">
          {may(session.role, 'power') && <span className="td check" role="columnheader" aria-label="Select" />}
          {columns.map((c) => (
            <span key={c.key} className="td" role="columnheader" aria-sort={sort.key === c.key ? (sort.desc ? 'descending' : 'ascending') : 'none'}>
              {c.live ? (
                c.label
              ) : (
                <button type="button" className="sort" onClick={() => setSort((s) => ({ key: c.key, desc: s.key === c.key ? !s.desc : false }))}>
                  {c.label} {sort.key === c.key ? (sort.desc ? '▾' : '▴') : ''}
                </button>
              )}
            </span>
          ))}
        </div>
        <div className="tbody" onScroll={(e: UIEvent<HTMLDivElement>) => setScrollTop(e.currentTarget.scrollTop)}>
          <div style={{ height: rows.length * ROW, position: 'relative' }}>
            {visible.map((vm, i) => (
              <div key={vm.uuid} className="tr" role="row" aria-rowindex={first + i + 2} data-vm={vm.name} style={{ position: 'absolute', top: (first + i) * ROW, left: 0, right: 0 }}>
                {may(session.role, 'power') && (
                  <span className="td check" role="cell">
                    <input type="checkbox" aria-label={`Select ${vm.name}`} checked={selected.has(vm.uuid)} onChange={() => toggle(vm.uuid)} />
                  </span>
                )}
                {columns.map((c) => (
                  <span key={c.key} className="td" role="cell">
                    {cell(c, vm, usage.get(vm.uuid), now)}
                  </span>
                ))}
              </div>
            ))}
          </div>
          {vms.data && rows.length === 0 && <p className="empty">{vms.data.length === 0 ? 'No machines yet.' : 'No machine matches the search.'}</p>}
        </div>
      </div>
    </section>
  );
}
