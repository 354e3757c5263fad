/**
 * A machine's activity: charts of CPU, memory, disk and network over the
 * last hour from its host's reports (GET /vms/{id}/stats, one point per
 * stats interval; re-read each interval so they grow), and its history
 * (GET /vms/{id}/history): who changed which fields, old and new.
 */
import { useQuery } from '@tanstack/react-query';
import { api } from '../api';

interface Point {
  at: string;
  interval: number;
  cpu_load: number;
  rss_bytes: number;
  disk_read_bps: number;
  disk_write_bps: number;
  net_rx_bps: number | null;
  net_tx_bps: number | null;
}

const W = 420;
const H = 120;

function fmt(v: number, unit: string): string {
  if (unit === 'B' || unit === 'B/s') {
    const units = ['', 'Ki', 'Mi', 'Gi'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}${unit}`;
  }
  return `${v.toFixed(2)}${unit}`;
}

/** One small line chart; `series` share the y axis. */
function Chart({ title, unit, points, series }: { title: string; unit: string; points: Point[]; series: Array<{ label: string; value: (p: Point) => number | null; tone: string }> }) {
  const t0 = points.length > 0 ? Date.parse(points[0]!.at) : 0;
  const t1 = points.length > 0 ? Date.parse(points[points.length - 1]!.at) : 1;
  const max = Math.max(1e-9, ...points.flatMap((p) => series.map((s) => s.value(p) ?? 0)));
  const x = (p: Point): number => (t1 === t0 ? W : ((Date.parse(p.at) - t0) / (t1 - t0)) * W);
  const y = (v: number): number => H - (v / max) * (H - 8);
  const last = points[points.length - 1];
  return (
    <figure className="chart">
      <figcaption>
        {title}
        {last && (
          <span className="now">
            {series.map((s) => `${s.label} ${fmt(s.value(last) ?? 0, unit)}`).join(' · ')}
          </span>
        )}
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title}: ${points.length} points, the highest ${fmt(max, unit)}`} preserveAspectRatio="none">
        <line x1="0" y1={H - 0.5} x2={W} y2={H - 0.5} className="axis" />
        {series.map((s) => (
          <polyline key={s.label} className={`line ${s.tone}`} fill="none" points={points.map((p) => `${x(p).toFixed(1)},${y(s.value(p) ?? 0).toFixed(1)}`).join(' ')} />
        ))}
      </svg>
      <p className="hint">{points.length === 0 ? 'No figures yet: they arrive with the host\'s next report.' : `highest ${fmt(max, unit)}, last ${Math.round((t1 - t0) / 60000)} min`}</p>
    </figure>
  );
}

export function MachineCharts({ uuid }: { uuid: string }) {
  const stats = useQuery({
    queryKey: ['stats', uuid],
    queryFn: () => api<{ host: string | null; points: Point[] }>('GET', `/api/v1/vms/${uuid}/stats?points=360`),
    // The host reports every interval: read again as often, so the charts grow.
    refetchInterval: (q) => ((q.state.data?.points.at(-1)?.interval ?? 10) * 1000),
  });
  const points = stats.data?.points ?? [];
  if (stats.isError) return <p className="error">{(stats.error as Error).message}</p>;
  return (
    <div className="charts">
      <Chart title="CPU (vCPUs busy)" unit="" points={points} series={[{ label: 'load', value: (p) => p.cpu_load, tone: 'a' }]} />
      <Chart title="Memory (qemu's resident set)" unit="B" points={points} series={[{ label: 'rss', value: (p) => p.rss_bytes, tone: 'a' }]} />
      <Chart title="Disk" unit="B/s" points={points} series={[{ label: 'read', value: (p) => p.disk_read_bps, tone: 'a' }, { label: 'write', value: (p) => p.disk_write_bps, tone: 'b' }]} />
      <Chart title="Network" unit="B/s" points={points} series={[{ label: 'in', value: (p) => p.net_rx_bps, tone: 'a' }, { label: 'out', value: (p) => p.net_tx_bps, tone: 'b' }]} />
    </div>
  );
}

interface HistoryEntry {
  revision: string;
  at?: string;
  requestor?: string;
  message?: string;
  status?: string;
  changes: Array<{ field: string; old?: unknown; new?: unknown }>;
}

const show = (v: unknown): string => (v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v));

/** One change as a line: the lines a `log` gained, else old → new. */
function describe(c: { field: string; old?: unknown; new?: unknown }): string {
  if (c.field === 'log' && Array.isArray(c.new)) {
    const before = new Set(Array.isArray(c.old) ? (c.old as unknown[]) : []);
    const added = (c.new as unknown[]).filter((l) => !before.has(l)).map(String);
    return `+ ${added.map((l) => l.replace(/^\S+ - /, '')).join('; ') || '(trimmed)'}`;
  }
  return `${show(c.old).slice(0, 80)} → ${show(c.new).slice(0, 80)}`;
}

export function MachineHistory({ uuid }: { uuid: string }) {
  const history = useQuery({ queryKey: ['history', uuid], queryFn: () => api<{ entries: HistoryEntry[]; truncated: boolean }>('GET', `/api/v1/vms/${uuid}/history?limit=100`) });
  if (history.isError) return <p className="error">{(history.error as Error).message}</p>;
  const entries = [...(history.data?.entries ?? [])].reverse();
  return (
    <section className="card" aria-labelledby="history-title">
      <h2 id="history-title">History</h2>
      <ol className="history">
        {entries.map((e) => (
          <li key={e.revision}>
            <p>
              <strong>{e.requestor ?? 'drover'}</strong> <small>{e.at ? new Date(e.at).toLocaleString() : `revision ${e.revision}`}</small>
              {e.message ? <span className="hint"> {e.message}</span> : null}
            </p>
            <ul>
              {e.changes.slice(0, 8).map((c) => (
                <li key={c.field}>
                  <code>{c.field}</code>: {describe(c)}
                </li>
              ))}
            </ul>
          </li>
        ))}
      </ol>
      {history.data?.truncated && <p className="hint">Older versions were compacted away by etcd.</p>}
    </section>
  );
}
