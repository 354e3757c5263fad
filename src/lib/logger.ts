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

/**
 * Fields that hold secrets, censored wherever they appear in a log line (at
 * the top or one level down): a safety net under the rule that secrets are
 * never logged (docs/security.md "Secrets").
 */
const SECRET_FIELDS = ['password', 'token', 'authorization', 'cookie', 'secret', 's3_secret_access_key', 'secretAccessKey', 'secret_sha256', 'smtp_url', 'smtpUrl', 'privateKey', 'key_data'];
export const REDACT = { paths: SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]), censor: '[secret]' };

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  if (opts.pretty) {
    return pino({
      level,
      name: opts.name,
      redact: REDACT,
      transport: {
        target: 'pino-pretty',
        options: { destination: opts.destination ?? 2, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' },
      },
    });
  }
  return pino({ level, name: opts.name, redact: REDACT }, pino.destination({ dest: opts.destination ?? 2, sync: true }));
}

/** A logger that drops everything, for unit tests and the CLI. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
