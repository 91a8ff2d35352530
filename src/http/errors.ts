import type { IncomingMessage, ServerResponse } from 'node:http';
import { BadRequestError, InternalError, isMirrorError, MethodNotAllowedError, type MirrorError } from '../errors.js';
import type { Logger } from '../log.js';
import { addBytes } from './access-log.js';

/**
 * The registry error a request's failure answers as: a MirrorError as it is,
 * an error of express's own helpers (a bad JSON body on an /api/ route) as
 * the client's fault, anything else as an internal error.
 */
export function asMirrorError(err: unknown): MirrorError {
  if (isMirrorError(err)) return err;
  const e = err as { status?: unknown; expose?: unknown; message?: unknown } | null;
  if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true) {
    return Object.assign(new BadRequestError(String(e.message)), { statusCode: e.status });
  }
  return new InternalError();
}

/**
 * Writes every error body the HTTP server sends, in one shape:
 * `{"code":"MM_…","message":"…"}` plus the class's own fields (toJSON), the
 * status the class carries, never a stack trace. Unexpected errors are logged
 * in full and answered with MM_INTERNAL's generic message.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, logger: Logger, headers: Readonly<Record<string, string>> = {}): void {
  const answer = asMirrorError(err);
  const status = answer.statusCode;
  if (status === 500) {
    logger.error({ err, method: req.method, path: (req.url ?? '').split('?')[0] }, 'request failed');
  }
  if (res.headersSent) {
    // Mid-body: the only honest signal left is cutting the connection.
    res.destroy();
    return;
  }
  const body = Buffer.from(JSON.stringify(answer.toJSON()) + '\n');
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', body.length);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (answer instanceof MethodNotAllowedError) res.setHeader('Allow', answer.allow);
  if (answer.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(answer.retryAfterSeconds));
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  addBytes(res, body.length);
  res.end(body);
}
