/**
 * Users and tokens (admins): add and delete users, create a token for
 * anyone (shown once, with a copy button) and revoke tokens.
 */
import { useState, type FormEvent } from 'react';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { SimpleTable } from './SimpleTable';
import { api, ApiError } from '../api';

interface User {
  name: string;
  role: string;
  has_password: boolean;
  created_at: string;
}
interface Token {
  id: string;
  user: string;
  role: string;
  created_at: string;
  expires_at?: string;
  description?: string;
  expired: boolean;
}

export function UsersPage() {
  const client = useQueryClient();
  const users = useQuery({ queryKey: ['users'], queryFn: () => api<{ items: User[] }>('GET', '/api/v1/users') });
  const tokens = useQuery({ queryKey: ['tokens'], queryFn: () => api<{ items: Token[] }>('GET', '/api/v1/tokens') });
  const [error, setError] = useState('');
  const [made, setMade] = useState<{ id: string; token: string } | null>(null);

  const act = async (fn: () => Promise<unknown>): Promise<void> => {
    setError('');
    try {
      await fn();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
    void client.invalidateQueries({ queryKey: ['users'] });
    void client.invalidateQueries({ queryKey: ['tokens'] });
  };
  const addUser = (e: FormEvent<HTMLFormElement>): void => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const password = String(f.get('password') ?? '');
    const form = e.currentTarget;
    void act(() => api('POST', '/api/v1/users', { name: String(f.get('name')), role: String(f.get('role')), ...(password !== '' ? { password } : {}) })).then(() => form.reset());
  };
  const makeToken = (e: FormEvent<HTMLFormElement>): void => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const expires = String(f.get('expires') ?? '');
    void act(async () => setMade(await api<{ id: string; token: string }>('POST', '/api/v1/tokens', { user: String(f.get('user')), ...(expires !== '' ? { expires } : {}), description: String(f.get('description') ?? '') || undefined })));
  };

  return (
    <section aria-labelledby="users-title">
      <h1 id="users-title">Users and tokens</h1>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="grid">
        <section className="card" aria-labelledby="u-title">
          <h2 id="u-title">Users</h2>
          <SimpleTable columns={['Name', 'Role', 'Password', '']}>
              {(users.data?.items ?? []).map((u) => (
                <tr key={u.name}>
                  <td>{u.name}</td>
                  <td>{u.role}</td>
                  <td>{u.has_password ? 'set' : 'none'}</td>
                  <td>
                    <button type="button" className="danger" onClick={() => void act(() => api('DELETE', `/api/v1/users/${encodeURIComponent(u.name)}`))}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </SimpleTable>
          <form className="inline" onSubmit={addUser}>
            <label>
              Name
              <input name="name" required autoComplete="off" />
            </label>
            <label>
              Role
              <select name="role" defaultValue="user">
                <option>user</option>
                <option>operator</option>
                <option>auditor</option>
                <option>admin</option>
              </select>
            </label>
            <label>
              Password (optional)
              <input name="password" type="password" autoComplete="new-password" minLength={8} />
            </label>
            <button type="submit">Add user</button>
          </form>
        </section>
        <section className="card" aria-labelledby="t-title">
          <h2 id="t-title">API tokens</h2>
          {made && (
            <div className="made" role="status">
              <p>
                Token <code>{made.id}</code>, shown only now:
              </p>
              <code className="secret">{made.token}</code>
              <button type="button" onClick={() => void navigator.clipboard?.writeText(made.token)}>
                Copy
              </button>
            </div>
          )}
          <SimpleTable columns={['Id', 'User', 'Role', 'Expires', '']}>
              {(tokens.data?.items ?? []).map((t) => (
                <tr key={t.id}>
                  <td>
                    <code>{t.id}</code>
                    {t.description ? <small> {t.description}</small> : null}
                  </td>
                  <td>{t.user}</td>
                  <td>{t.role}</td>
                  <td>{t.expired ? 'expired' : (t.expires_at ?? 'never')}</td>
                  <td>
                    <button type="button" className="danger" onClick={() => void act(() => api('DELETE', `/api/v1/tokens/${t.id}`))}>
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </SimpleTable>
          <form className="inline" onSubmit={makeToken}>
            <label>
              For user
              <select name="user">
                {(users.data?.items ?? []).map((u) => (
                  <option key={u.name}>{u.name}</option>
                ))}
              </select>
            </label>
            <label>
              Expires in
              <input name="expires" placeholder="30d" />
            </label>
            <label>
              Description
              <input name="description" />
            </label>
            <button type="submit">Create token</button>
          </form>
        </section>
      </div>
    </section>
  );
}
