/**
 * The VM's serial console with xterm.js, read and write, through the
 * API's relay (docs/consoles.md); the last screenful arrives first. Paste
 * goes to the guest as typed text.
 */
import { useEffect, useRef, useState } from 'react';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { ApiError } from '../api';
import { consoleUrl } from './ticket';

export default function SerialConsole({ uuid }: { uuid: string }) {
  const host = useRef<HTMLDivElement>(null);
  const [state, setState] = useState('Connecting…');

  useEffect(() => {
    const term = new Terminal({ convertEol: true, fontSize: 14, scrollback: 5000 });
    if (host.current) term.open(host.current);
    let ws: WebSocket | null = null;
    let closed = false;
    void consoleUrl(uuid, 'serial').then(
      (url) => {
        if (closed) return;
        ws = new WebSocket(url, ['binary']);
        ws.binaryType = 'arraybuffer';
        ws.onopen = () => {
          setState('Connected');
          term.focus();
        };
        ws.onmessage = (e) => term.write(new Uint8Array(e.data as ArrayBuffer));
        ws.onclose = () => setState('Disconnected: reopen the tab to connect again.');
        term.onData((d) => ws?.readyState === WebSocket.OPEN && ws.send(new TextEncoder().encode(d)));
      },
      (err: unknown) => setState(err instanceof ApiError ? err.message : String(err)),
    );
    return () => {
      closed = true;
      ws?.close();
      term.dispose();
    };
  }, [uuid]);

  return (
    <section className="console" aria-label="Serial console">
      <div className="console-bar">
        <span role="status">{state}</span>
      </div>
      <div className="serial-screen" ref={host} data-testid="serial-screen" />
    </section>
  );
}
