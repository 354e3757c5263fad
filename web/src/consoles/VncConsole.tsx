/**
 * The VM's screen with noVNC, through the API's relay (docs/consoles.md):
 * Ctrl-Alt-Del, full screen and a screenshot of the screen (a PNG of the
 * canvas). Loaded only when the tab opens.
 */
import { useEffect, useRef, useState } from 'react';
import RFB from '@novnc/novnc';
import { ApiError } from '../api';
import { consoleUrl } from './ticket';

export default function VncConsole({ uuid }: { uuid: string }) {
  const screen = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | null>(null);
  const [state, setState] = useState('Connecting…');

  useEffect(() => {
    let closed = false;
    void consoleUrl(uuid, 'console').then(
      (url) => {
        if (closed || !screen.current) return;
        const r = new RFB(screen.current, url, { wsProtocols: ['binary'] });
        r.scaleViewport = true;
        r.background = '#111';
        r.addEventListener('connect', () => setState('Connected'));
        r.addEventListener('disconnect', () => setState('Disconnected: reopen the tab to connect again.'));
        rfb.current = r;
      },
      (err: unknown) => setState(err instanceof ApiError ? err.message : String(err)),
    );
    return () => {
      closed = true;
      rfb.current?.disconnect();
      rfb.current = null;
    };
  }, [uuid]);

  const screenshot = (): void => {
    const canvas = screen.current?.querySelector('canvas');
    if (!canvas) return;
    const a = document.createElement('a');
    a.href = canvas.toDataURL('image/png');
    a.download = `${uuid}-screen.png`;
    a.click();
  };

  return (
    <section className="console" aria-label="VNC console">
      <div className="console-bar">
        <span role="status">{state}</span>
        <button type="button" onClick={() => rfb.current?.sendCtrlAltDel()}>
          Ctrl-Alt-Del
        </button>
        <button type="button" onClick={() => void screen.current?.requestFullscreen()}>
          Full screen
        </button>
        <button type="button" onClick={screenshot}>
          Screenshot
        </button>
      </div>
      <div className="vnc-screen" ref={screen} data-testid="vnc-screen" />
    </section>
  );
}
