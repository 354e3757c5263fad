/**
 * GET /api/v1/vms: filters, sort and cursor paging over the VMs a caller
 * may see (pure: the route hands in what VmAccess read).
 */
import { DroverError } from '../lib/errors.js';
import type { JsonObject } from '../store/vm-repository.js';
import type { z } from 'zod';
import type { vmListQuery } from './schemas.js';
import type { IndexedVm } from './vm-index.js';

export type ListQuery = z.infer<typeof vmListQuery>;

export interface VmPage {
  items: JsonObject[];
  next_cursor: string | null;
  total: number;
}

function text(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function matches(obj: JsonObject, q: ListQuery): boolean {
  if (q.owner !== undefined && text(obj.owner) !== q.owner) return false;
  if (q.host !== undefined && text(obj.host) !== q.host) return false;
  if (q.status !== undefined && text(obj.status) !== q.status) return false;
  if (q.pool !== undefined && text(obj.pool) !== q.pool) return false;
  if (q.q !== undefined && q.q !== '') {
    const needle = q.q.toLowerCase();
    if (![obj.name, obj.uuid, obj.owner, obj.host].some((v) => text(v).toLowerCase().includes(needle))) return false;
  }
  return true;
}

type Key = [string, string];

function encodeCursor(key: Key): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

function decodeCursor(cursor: string): Key {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return [v[0], v[1]];
  } catch {
    // fall through
  }
  throw new DroverError('USAGE', 'The cursor is not one this API gave out; start again without it.');
}

function compare(a: Key, b: Key): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

/** `vms` come sorted by name, then uuid (VmIndex.all): sorting by name costs nothing. */
export function pageVms(vms: readonly IndexedVm[], q: ListQuery): VmPage {
  const desc = q.sort.startsWith('-');
  const field = desc ? q.sort.slice(1) : q.sort;
  const rows: { obj: JsonObject; key: Key }[] = [];
  for (const v of vms) if (matches(v.obj, q)) rows.push({ obj: v.obj, key: [text(v.obj[field]), v.vm.uuid] });
  if (field !== 'name') rows.sort((a, b) => compare(a.key, b.key));
  if (desc) rows.reverse();
  let start = 0;
  if (q.cursor !== undefined) {
    const after = decodeCursor(q.cursor);
    start = rows.findIndex((r) => (desc ? compare(r.key, after) < 0 : compare(r.key, after) > 0));
    if (start < 0) start = rows.length;
  }
  const page = rows.slice(start, start + q.limit);
  const last = page[page.length - 1];
  const more = start + q.limit < rows.length;
  return { items: page.map((r) => r.obj), next_cursor: more && last ? encodeCursor(last.key) : null, total: rows.length };
}

/** JSON merge patch (RFC 7396): null removes a member, objects merge, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const base: JsonObject = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as JsonObject) } : {};
  for (const [k, v] of Object.entries(patch as JsonObject)) {
    if (v === null) delete base[k];
    else base[k] = mergePatch(base[k], v);
  }
  return base;
}
