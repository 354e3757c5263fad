/** `drover vm log`: the record's own `log` lines, then the VM's events from `P/log/`. */
import type { StoredEvent } from '../../store/event-log.js';
import { rawObject } from '../../store/vm-repository.js';
import type { StoreSession } from '../store-session.js';
import { resolveVm } from '../../vm-ops/resolve-vm.js';
import { vmLabel } from '../../vm-ops/vm-view.js';

export interface VmLog {
  uuid: string;
  label: string;
  log: string[];
  events: StoredEvent[];
}

export async function readVmLog(store: StoreSession, ref: string): Promise<VmLog> {
  const vm = await resolveVm(store.vms, ref);
  const raw = rawObject(vm.raw)?.log;
  const log = Array.isArray(raw) ? raw.map(String) : [];
  const events = await store.events.list({ vm: vm.uuid });
  return { uuid: vm.uuid, label: vmLabel(vm), log, events };
}

/** `ts  host  LEVEL  code  [vm  ]message`: the VM column only where events of several VMs mix (`vm events`). */
export function eventLine(e: StoredEvent, vm?: string): string {
  const level = typeof e.level === 'string' ? e.level.toUpperCase() : '-';
  const who = vm !== undefined ? `${vm}  ` : '';
  return `${String(e.ts)}  ${String(e.host || '-')}  ${level}  ${String(e.event)}  ${who}${String(e.message)}`;
}

export function formatVmLog(l: VmLog): string {
  const lines = [`Record log of VM ${l.label}:`];
  lines.push(...(l.log.length > 0 ? l.log.map((s) => `  ${s}`) : ['  (empty)']));
  lines.push(`Events of VM ${l.label}:`);
  lines.push(...(l.events.length > 0 ? l.events.map((e) => `  ${eventLine(e)}`) : ['  (none)']));
  return `${lines.join('\n')}\n`;
}
