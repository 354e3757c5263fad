/**
 * Sign in with a user name and password, or an API token; a one-time
 * login link from `drover up` (`#login=drl_...`, never sent to a server
 * log) signs in at once. After a session expires the user lands here and
 * goes back to the page it was on.
 */
import { useEffect, useState, type FormEvent } from 'react';
import { api, ApiError, type Session } from '../api';

export function LoginPage({ onLogin }: { onLogin: (s: Session) => void }) {
  const [mode, setMode] = useState<'password' | 'token'>('password');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (body: Record<string, string>, back: string): Promise<void> => {
    setBusy(true);
    setError('');
    try {
      const s = await api<Session>('POST', '/api/v1/login', body);
      if (location.hash !== back) location.hash = back;
      onLogin(s);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : 'The API cannot be reached.');
    } finally {
      setBusy(false);
    }
  };

  // Once, at load: a one-time link in the address signs in at once.
  useEffect(() => {
    const m = /^#login=(drl_[A-Za-z0-9_-]+)$/.exec(location.hash);
    if (!m?.[1]) return;
    history.replaceState(null, '', location.pathname);
    void submit({ token: m[1] }, '#/').catch(() => undefined);
  }, []);

  const onSubmit = (e: FormEvent<HTMLFormElement>): void => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const back = location.hash.startsWith('#/') ? location.hash : '#/';
    void submit(mode === 'password' ? { user: String(f.get('user') ?? ''), password: String(f.get('password') ?? '') } : { token: String(f.get('token') ?? '') }, back);
  };

  return (
    <main className="login">
      <form onSubmit={onSubmit} aria-labelledby="login-title">
        <h1 id="login-title">drover</h1>
        <p className="hint">Sign in to manage your virtual machines.</p>
        <div className="segmented" role="tablist" aria-label="Sign in with">
          <button type="button" role="tab" aria-selected={mode === 'password'} onClick={() => setMode('password')}>
            Password
          </button>
          <button type="button" role="tab" aria-selected={mode === 'token'} onClick={() => setMode('token')}>
            Token
          </button>
        </div>
        {mode === 'password' ? (
          <>
            <label>
              User
              <input name="user" autoComplete="username" required autoFocus />
            </label>
            <label>
              Password
              <input name="password" type="password" autoComplete="current-password" required />
            </label>
          </>
        ) : (
          <label>
            Token
            <input name="token" autoComplete="off" required placeholder="drt_…" autoFocus />
          </label>
        )}
        {error !== '' && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
