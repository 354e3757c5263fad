/**
 * The one logger factory. JSON lines (pino) by default; `pretty` gives the
 * readable form `drover up` uses in a terminal.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  pretty?: boolean;
  name?: string;
  /** A file descriptor or path to write to; stderr by default. */
  destination?: number | string;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  if (opts.pretty) {
    return pino({
      level,
      name: opts.name,
      transport: {
        target: 'pino-pretty',
        options: { destination: opts.destination ?? 2, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' },
      },
    });
  }
  return pino({ level, name: opts.name }, pino.destination({ dest: opts.destination ?? 2, sync: true }));
}

/** A logger that drops everything, for unit tests and the CLI. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
