/** Which events `drover vm events` shows: one VM, a minimum level, a start time (through etcd or the API alike). */
import type { EventLevel } from '../../contract/event.js';
import type { StoredEvent } from '../../store/event-log.js';

export const EVENT_LEVELS: readonly EventLevel[] = ['info', 'warn', 'error'];

/** An event's level as a rank; an unknown level counts as info. */
export function levelRank(level: unknown): number {
  return Math.max(0, EVENT_LEVELS.indexOf(level as EventLevel));
}

export interface EventFilter {
  vm?: string;
  minLevel: number;
  since: Date | null;
}

export function matchesEvent(e: StoredEvent, f: EventFilter): boolean {
  if (f.vm !== undefined && e.vm !== f.vm) return false;
  if (levelRank(e.level) < f.minLevel) return false;
  return f.since === null || Date.parse(String(e.ts)) >= f.since.getTime();
}
