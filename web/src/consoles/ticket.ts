/** A console ticket (docs/consoles.md) and the websocket URL it opens. */
import { api } from '../api';

export async function consoleUrl(uuid: string, kind: 'console' | 'serial'): Promise<string> {
  const t = await api<{ ticket: string; path: string }>('POST', `/api/v1/vms/${uuid}/${kind}`);
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${t.path}?ticket=${encodeURIComponent(t.ticket)}`;
}
