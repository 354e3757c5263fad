/**
 * Every mutation through the API writes an event naming the user who asked
 * and the token id (never the token): docs/security.md "What is logged".
 * A failed audit write does not undo the change; it is logged instead.
 */
import type { Principal } from '../auth/authenticate.js';
import type { DroverEvent, EventCode, EventLevel } from '../contract/event.js';
import { errorMessage } from '../lib/errors.js';
import type { ApiDeps } from './context.js';

export interface AuditEntry {
  event: EventCode;
  message: string;
  level?: EventLevel;
  vm?: string;
  owner?: string;
  revision?: string;
  fields?: string[];
}

export async function audit(deps: ApiDeps, who: Principal | { user: string; tokenId?: string } | null, entry: AuditEntry): Promise<void> {
  const event: DroverEvent = {
    ts: deps.now().toISOString(),
    host: deps.settings.name,
    level: entry.level ?? 'info',
    event: entry.event,
    message: entry.message,
    ...(entry.vm ? { vm: entry.vm } : {}),
    ...(entry.owner ? { owner: entry.owner } : {}),
    ...(entry.revision ? { revision: entry.revision } : {}),
    ...(entry.fields ? { fields: entry.fields } : {}),
    ...(who ? { requestor: who.user } : {}),
    ...(who?.tokenId ? { token_id: who.tokenId } : {}),
  };
  try {
    await deps.store.events.append(event);
  } catch (err) {
    deps.logger.warn({ err: errorMessage(err), event: event.event, requestor: event.requestor }, 'could not write the audit event');
  }
}
