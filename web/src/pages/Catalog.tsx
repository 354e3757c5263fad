/** Images (docs/storage.md) and pools (docs/pools.md), read-only: created with `drover image` and `drover pool`. */
import { useQuery } from '@tanstack/react-query';
import { SimpleTable } from './SimpleTable';
import { api, type Session } from '../api';

interface Image {
  uuid: string;
  name: string;
  version: string;
  status?: string;
  size?: number;
  format?: string;
}
interface Pool {
  name: string;
  size?: number;
  [k: string]: unknown;
}

export function ImagesPage() {
  const images = useQuery({ queryKey: ['images'], queryFn: () => api<{ items: Image[] }>('GET', '/api/v1/images'), retry: false });
  return (
    <section aria-labelledby="images-title">
      <h1 id="images-title">Images</h1>
      {images.isError && <p className="error">{(images.error as Error).message}</p>}
      {images.data?.items.length === 0 && <p className="hint">No images yet: an operator imports them with drover image import.</p>}
      {(images.data?.items.length ?? 0) > 0 && (
        <SimpleTable columns={['Name', 'Version', 'Status', 'Format', 'Size']}>
            {images.data!.items.map((i) => (
              <tr key={i.uuid}>
                <td>{i.name}</td>
                <td>{i.version}</td>
                <td>{i.status ?? '—'}</td>
                <td>{i.format ?? '—'}</td>
                <td>{i.size !== undefined ? `${(i.size / 1048576).toFixed(0)} MiB` : '—'}</td>
              </tr>
            ))}
          </SimpleTable>
      )}
    </section>
  );
}

export function PoolsPage({ session }: { session: Session }) {
  const pools = useQuery({ queryKey: ['pools'], queryFn: () => api<{ items: Pool[] }>('GET', '/api/v1/pools'), retry: false, enabled: session.role !== 'user' });
  if (session.role === 'user') return <p className="hint">Pools are an operator's tool (drover pool).</p>;
  return (
    <section aria-labelledby="pools-title">
      <h1 id="pools-title">Pools</h1>
      {pools.isError && <p className="error">{(pools.error as Error).message}</p>}
      {pools.data?.items.length === 0 && <p className="hint">No pools: drover pool create makes one.</p>}
      <ul className="plain">
        {(pools.data?.items ?? []).map((p) => (
          <li key={p.name}>
            <strong>{p.name}</strong> <code>{JSON.stringify({ ...p, name: undefined }).slice(0, 160)}</code>
          </li>
        ))}
      </ul>
    </section>
  );
}
