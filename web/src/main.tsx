/**
 * The drover dashboard (docs/web.md): React + TanStack Query over the
 * public API only. A hash router keeps every page a plain URL the API
 * serves as one file; the live event stream (live.ts) keeps the query
 * cache current without polling.
 */
import { StrictMode, useEffect, useState, type ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import { QueryClient, QueryClientProvider, useQueryClient } from '@tanstack/react-query';
import { api, setCsrf, whenUnauthorized, type Session } from './api';
import { useLiveStream, type LiveState } from './live';
import { LoginPage } from './pages/Login';
import { MachinesPage } from './pages/Machines';
import { MachinePage } from './pages/Machine';
import { HostsPage } from './pages/Hosts';
import { EventsPage } from './pages/Events';
import { CreateVmPage } from './pages/CreateVm';
import { UsersPage } from './pages/Users';
import { ImagesPage, PoolsPage } from './pages/Catalog';
import './styles.css';

const client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity, retry: 1, refetchOnWindowFocus: false } } });

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = (): void => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function Shell({ session, onLogout, live, children }: { session: Session; onLogout: () => void; live: LiveState; children: ReactNode }) {
  const hash = useHash();
  const link = (href: string, label: string) => (
    <a href={href} aria-current={hash === href || (href === '#/' && (hash === '' || hash.startsWith('#/vm/'))) ? 'page' : undefined}>
      {label}
    </a>
  );
  return (
    <div className="shell">
      <header className="top">
        <span className="brand">drover</span>
        <nav aria-label="Main">
          {link('#/', 'Machines')}
          {link('#/hosts', 'Hosts')}
          {link('#/images', 'Images')}
          {session.role !== 'user' && link('#/pools', 'Pools')}
          {link('#/events', 'Events')}
          {session.role === 'admin' && link('#/users', 'Users')}
        </nav>
        <span className={`live live-${live}`} role="status">
          {live === 'live' ? 'Live' : live === 'connecting' ? 'Connecting…' : 'Reconnecting to the event stream…'}
        </span>
        <span className="who">
          {session.user} <small>({session.role})</small>
        </span>
        <button type="button" className="quiet" onClick={onLogout}>
          Log out
        </button>
      </header>
      <main>{children}</main>
    </div>
  );
}

function Routes({ session }: { session: Session }) {
  const hash = useHash();
  const vm = /^#\/vm\/([0-9a-f-]{36})/.exec(hash);
  if (vm?.[1]) return <MachinePage uuid={vm[1]} session={session} />;
  if (hash === '#/hosts') return <HostsPage session={session} />;
  if (hash === '#/events') return <EventsPage />;
  if (hash === '#/images') return <ImagesPage />;
  if (hash === '#/pools') return <PoolsPage session={session} />;
  if (hash === '#/create') return <CreateVmPage session={session} />;
  if (hash === '#/users' && session.role === 'admin') return <UsersPage />;
  return <MachinesPage session={session} />;
}

function Signed({ session, onLogout }: { session: Session; onLogout: () => void }) {
  const live = useLiveStream(useQueryClient());
  return (
    <Shell session={session} onLogout={onLogout} live={live}>
      <Routes session={session} />
    </Shell>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  useEffect(() => {
    whenUnauthorized(() => {
      client.clear();
      setSession(null);
    });
    api<Session>('GET', '/api/v1/session').then(
      (s) => {
        setCsrf(s.csrf_token);
        setSession(s);
      },
      () => setSession(null),
    );
  }, []);
  const logout = (): void => {
    void api('POST', '/api/v1/logout').finally(() => {
      setCsrf(undefined);
      client.clear();
      setSession(null);
    });
  };
  if (session === undefined) return <p className="loading">Loading…</p>;
  if (session === null)
    return (
      <LoginPage
        onLogin={(s) => {
          setCsrf(s.csrf_token);
          setSession(s);
        }}
      />
    );
  return <Signed session={session} onLogout={logout} />;
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={client}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
