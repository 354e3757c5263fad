/**
 * The agent's Prometheus endpoint: `GET /metrics` on `metrics_listen`
 * (docs/metrics.md). Loopback by default; a scrape reads only what the
 * collector already holds, so it costs no /proc or QMP round trip.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { DroverError } from '../lib/errors.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT` or `[IPv6]:PORT` → its parts; null for `off`. Throws one sentence for anything else. */
export function parseListen(value: string): ListenAddress | null {
  if (value === 'off') return null;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535) {
    throw new DroverError('USAGE', `"${value}" is not HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464, 0.0.0.0:0 for any free port) or "off".`);
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

export interface MetricsServer {
  /** Where it listens, as HOST:PORT (the real port when 0 was asked for). */
  readonly address: string;
  close(): Promise<void>;
}

export async function startMetricsServer(listen: ListenAddress, registry: Registry): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end('Only GET is supported.\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: the metrics are at /metrics.\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`Collecting the metrics failed: ${String(err)}\n`),
    );
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new DroverError('USAGE', `The metrics endpoint cannot listen on ${listen.host}:${listen.port}: ${err.code ?? err.message}.`, true, { cause: err })),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    address: `${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
