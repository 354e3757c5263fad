/**
 * The dashboard's one way to the API: same-origin fetch with the session
 * cookie, the CSRF token on every state-changing call, and the API's own
 * sentence as the error. A 401 anywhere sends the user to the login page
 * (and back afterwards).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

let csrf = '';
let onUnauthorized: () => void = () => undefined;

export function setCsrf(token: string | undefined): void {
  csrf = token ?? '';
}

export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf !== '') headers['X-CSRF-Token'] = csrf;
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let data: unknown;
  try {
    data = text === '' ? null : JSON.parse(text);
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data as { error?: string; field?: string } | null;
    if (res.status === 401 && path !== '/api/v1/login') onUnauthorized();
    throw new ApiError(res.status, err?.error ?? `The API answered ${res.status} ${res.statusText}.`, err?.field);
  }
  return data as T;
}

export interface Vm {
  uuid: string;
  name: string;
  owner?: string;
  host?: string;
  status?: string;
  error?: string;
  pool?: string;
  spec: {
    vcpus?: number;
    memory?: number;
    disks?: Array<{ path?: string; image?: string; rbd?: string; size?: number; format?: string }>;
    nics?: Array<{ network?: string; bridge?: string; mac?: string; ip?: string }>;
    vnc?: string;
    boot?: { kernel?: string; initrd?: string; cmdline?: string };
  };
  runtime?: { pid?: number; started_at?: string; vnc?: string; serial_socket?: string };
  snapshots?: Array<{ name: string; created_at?: string; incomplete?: boolean }>;
  log?: string[];
  [k: string]: unknown;
}

export interface Session {
  user: string;
  role: 'admin' | 'operator' | 'user' | 'auditor';
  csrf_token?: string;
}

export interface Host {
  name: string;
  status?: string;
  memory?: number;
  cpus?: number;
  accel?: string;
  [k: string]: unknown;
}

export interface DroverEvent {
  ts: string;
  host: string;
  vm?: string;
  level: 'info' | 'warn' | 'error';
  event: string;
  message: string;
  requestor?: string;
}

/** What a role may do (docs/security.md): the dashboard offers only these. */
export function may(role: Session['role'], what: 'power' | 'console' | 'snapshot' | 'backup' | 'create' | 'admin'): boolean {
  if (role === 'admin') return true;
  if (role === 'auditor') return false;
  return what !== 'admin';
}
