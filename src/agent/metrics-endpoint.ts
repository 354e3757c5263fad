/**
 * The agent's Prometheus endpoint (docs/metrics.md) on metrics_listen. A
 * port that is taken is logged and the agent runs on without the endpoint:
 * VMs matter more than metrics.
 */
import type { Registry } from 'prom-client';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { parseListen, startMetricsServer, type MetricsServer } from '../observability/metrics-server.js';

/** Serves `registry` at GET /metrics on `metricsListen`; null when it is "off" or could not listen. */
export async function startMetricsEndpoint(metricsListen: string, registry: Registry, log: Logger): Promise<MetricsServer | null> {
  const listen = parseListen(metricsListen);
  if (!listen) {
    log.info('metrics endpoint off (metrics_listen = "off")');
    return null;
  }
  try {
    const server = await startMetricsServer(listen, registry);
    log.info({ metrics: server.address }, `metrics endpoint listening on http://${server.address}/metrics`);
    return server;
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'the metrics endpoint is off; the agent runs on without it');
    return null;
  }
}
