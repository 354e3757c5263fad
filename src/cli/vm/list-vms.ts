/** `drover vm list`: rows for the table or JSON, filtered and sorted by name. */
import type { StoredVm } from '../../store/vm-repository.js';
import { VM_FIELD_ALIASES } from '../output/columns.js';
import { formatCell, getField, matchesFilters, pickFields, type FieldFilter, type JsonObject } from '../output/fields.js';
import { vmObject } from '../../vm-ops/vm-view.js';

export function vmField(field: string): string {
  return VM_FIELD_ALIASES[field] ?? field;
}

export function selectVms(vms: readonly StoredVm[], filters: readonly FieldFilter[]): JsonObject[] {
  return selectObjects(vms.map(vmObject), filters);
}

/** Filters and sorts records by name (then uuid): the same order through etcd or the API. */
export function selectObjects(objects: readonly JsonObject[], filters: readonly FieldFilter[]): JsonObject[] {
  return objects
    .map((obj) => ({ name: typeof obj.name === 'string' ? obj.name : '', obj }))
    .filter((v) => matchesFilters(v.obj, filters, vmField))
    .sort((a, b) => (a.name === b.name ? String(a.obj.uuid).localeCompare(String(b.obj.uuid)) : a.name < b.name ? -1 : 1))
    .map((v) => v.obj);
}

export function vmRows(objects: readonly JsonObject[], columns: readonly string[]): string[][] {
  return objects.map((obj) => columns.map((c) => formatCell(getField(obj, vmField(c)))));
}

export function vmJson(objects: readonly JsonObject[], columns: readonly string[] | null): JsonObject[] {
  return columns ? objects.map((o) => pickFields(o, columns, vmField)) : [...objects];
}
