/**
 * Every error leaves the API as `{"error": "<one sentence>", "field": "<path>"}`
 * (CONTRACT.md section 7), with every problem listed in `problems` when a
 * body has several. DroverError codes map to HTTP statuses here, once.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { DroverError, errorMessage, oneSentence, type ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  USAGE: 400,
  INVALID_SPEC: 400,
  CONFIG_INVALID: 400,
  AMBIGUOUS: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  START_FAILED: 409,
  MIGRATION_FAILED: 409,
  SNAPSHOT_FAILED: 409,
  BACKUP_FAILED: 409,
  S3_ERROR: 502,
  THROTTLED: 429,
  ETCD_UNAVAILABLE: 503,
  TIMEOUT: 504,
};

export interface ApiProblem {
  field: string;
  error: string;
}

/** A 400 that names the field; thrown by handlers that check what schemas cannot. */
export class FieldError extends DroverError {
  constructor(
    readonly field: string,
    message: string,
    code: ErrorCode = 'INVALID_SPEC',
  ) {
    super(code, message);
  }
}

function issuePath(path: unknown): string {
  if (Array.isArray(path)) return path.map(String).join('.');
  if (typeof path === 'string') return path.replace(/^\//, '').replaceAll('/', '.');
  return '';
}

interface ValidationItem {
  instancePath?: string;
  message?: string;
  params?: { issue?: { path?: unknown[]; message?: string } };
}

function validationProblems(err: FastifyError, where: string): ApiProblem[] {
  const items = (err.validation ?? []) as ValidationItem[];
  return items.map((v) => {
    const path = v.params?.issue?.path ? issuePath(v.params.issue.path) : issuePath(v.instancePath);
    const message = (v.params?.issue?.message ?? v.message ?? 'is invalid').replace(/^Invalid input: /, '');
    return { field: path === '' ? where : `${where}.${path}`, error: message };
  });
}

function send(reply: FastifyReply, status: number, body: { error: string; field?: string; problems?: ApiProblem[] }): FastifyReply {
  return reply.code(status).type('application/json').send(JSON.stringify(body));
}

export function handleError(logger: Logger) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (hasZodFastifySchemaValidationErrors(err) || err.validation) {
      const where = err.validationContext ?? 'body';
      const problems = validationProblems(err, where);
      const first = problems[0] ?? { field: where, error: 'is invalid' };
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
      return send(reply, 400, { error: `Field ${first.field} is invalid: ${first.error.replace(/\.$/, '')}${more}.`, field: first.field, problems });
    }
    if (err instanceof DroverError) {
      const status = STATUS[err.code] ?? 500;
      if (status >= 500) logger.warn({ code: err.code, err: err.message, url: req.routeOptions.url }, 'request failed');
      if (err.code === 'THROTTLED') void reply.header('Retry-After', '60');
      return send(reply, status, { error: oneSentence(err.message), ...(err instanceof FieldError ? { field: err.field } : {}) });
    }
    if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      return send(reply, 400, { error: 'The body is not valid JSON.', field: 'body' });
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return send(reply, 413, { error: 'The body is too large.', field: 'body' });
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return send(reply, 415, { error: 'The body must be JSON (Content-Type: application/json).', field: 'body' });
    if (typeof err.statusCode === 'number' && err.statusCode < 500) return send(reply, err.statusCode, { error: oneSentence(err.message) });
    logger.error({ err: errorMessage(err), url: req.routeOptions.url }, 'unexpected error in a request');
    return send(reply, 500, { error: 'The API failed unexpectedly; the error is in its log.' });
  };
}
