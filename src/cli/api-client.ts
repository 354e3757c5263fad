/**
 * The CLI's way through the HTTP API (`--api URL` or DROVER_API_URL, with
 * DROVER_TOKEN or `--token-file`): for users who have a token but no etcd
 * access. Answers become the same DroverErrors as the etcd path, so output
 * and exit codes are the same either way.
 */
import { DroverError, errorMessage, type ErrorCode } from '../lib/errors.js';

export interface ApiTarget {
  readonly url: string;
  readonly token: string;
}

const CODES: Readonly<Record<number, ErrorCode>> = {
  400: 'INVALID_SPEC',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  412: 'CONFLICT',
  413: 'INVALID_SPEC',
  429: 'THROTTLED',
  503: 'ETCD_UNAVAILABLE',
  504: 'TIMEOUT',
};

/** `path` under the API's URL, keeping a path prefix it may have (https://host/drover + /api/v1/vms). */
export function apiUrl(target: ApiTarget, path: string): URL {
  const base = target.url.endsWith('/') ? target.url.slice(0, -1) : target.url;
  return new URL(`${base}${path}`);
}

export interface ApiAnswer<T> {
  status: number;
  data: T;
}

export async function apiRequest<T>(target: ApiTarget, method: string, path: string, body?: unknown, accept = 'application/json'): Promise<ApiAnswer<T>> {
  let res: Response;
  try {
    res = await fetch(apiUrl(target, path), {
      method,
      // A redirect could carry the token somewhere else: refused.
      redirect: 'error',
      headers: { Authorization: `Bearer ${target.token}`, Accept: accept, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    throw new DroverError('ETCD_UNAVAILABLE', `The API at ${target.url} cannot be reached (${errorMessage(cause ?? err)}).`, true);
  }
  const text = await res.text();
  let data: unknown;
  try {
    data = text === '' ? null : JSON.parse(text);
  } catch {
    data = null;
  }
  if (!res.ok) {
    const sentence = typeof (data as { error?: unknown })?.error === 'string' ? (data as { error: string }).error : `The API answered ${res.status} ${res.statusText}.`;
    throw new DroverError(CODES[res.status] ?? 'ETCD_UNAVAILABLE', sentence, res.status >= 500);
  }
  return { status: res.status, data: data as T };
}

/** Every page of a cursor-paged list. */
export async function apiListAll<T>(target: ApiTarget, path: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page: ApiAnswer<{ items: T[]; next_cursor: string | null }> = await apiRequest(target, 'GET', `${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    items.push(...page.data.items);
    cursor = page.data.next_cursor;
  } while (cursor);
  return items;
}
