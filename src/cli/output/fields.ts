/**
 * Field access for `-o` columns and `field=value` filters: top-level or
 * dotted paths (`spec.memory`, `runtime.pid`) into a record's JSON object.
 */
import { DroverError } from '../../lib/errors.js';

export type JsonObject = Record<string, unknown>;

export function getField(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = (cur as JsonObject)[part];
  }
  return cur;
}

/** A value as one table cell: absent or empty shows as "-", objects as compact JSON. */
export function formatCell(value: unknown): string {
  const text = valueText(value);
  return text === '' ? '-' : text;
}

/** The text a filter compares with: absent and empty are both "". */
export function valueText(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value.replace(/\s*\n\s*/g, ' ');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** Parses `-o a,b,c` into column names. */
export function parseColumns(spec: string): string[] {
  const cols = spec
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '');
  if (cols.length === 0) throw new DroverError('USAGE', `Option -o needs at least one field name, e.g. -o uuid,name,status.`);
  return cols;
}

export interface FieldFilter {
  field: string;
  value: string;
}

/** Parses `field=value` words; `host=` matches an absent or empty field, `name=web-*` is a glob. */
export function parseFilters(words: readonly string[]): FieldFilter[] {
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new DroverError('USAGE', `Filter ${JSON.stringify(w)} must look like field=value, e.g. status=RUNNING.`);
    return { field: w.slice(0, eq), value: w.slice(eq + 1) };
  });
}

/** A filter value with `*` (any run of characters) or `?` (one character) is a glob over the whole text. */
export function matchesValue(text: string, pattern: string): boolean {
  if (!/[*?]/.test(pattern)) return text === pattern;
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(text);
}

export function matchesFilters(obj: unknown, filters: readonly FieldFilter[], resolve: (field: string) => string = (f) => f): boolean {
  return filters.every((f) => matchesValue(valueText(getField(obj, resolve(f.field))), f.value));
}

/** The selected columns of an object, for `--json -o ...`. */
export function pickFields(obj: unknown, columns: readonly string[], resolve: (field: string) => string = (f) => f): JsonObject {
  const out: JsonObject = {};
  for (const c of columns) out[c] = getField(obj, resolve(c)) ?? null;
  return out;
}
