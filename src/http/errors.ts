import type { IncomingMessage, ServerResponse } from 'node:http';
import { AmbiguousHashError, isMirrorError, MethodNotAllowedError, NoSnapshotError, NotFoundError, NotHeldError, UnsafePathError } from '../errors.js';
import type { Logger } from '../log.js';
import { addBytes } from './access-log.js';

export function statusOf(err: unknown): number {
  if (err instanceof UnsafePathError) return 400;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof MethodNotAllowedError) return 405;
  if (err instanceof AmbiguousHashError) return 409;
  if (err instanceof NotHeldError || err instanceof NoSnapshotError) return 503;
  // Errors of express's own helpers (a bad JSON body on an /api/ route) say what the client did wrong.
  const e = err as { status?: unknown; expose?: unknown } | null;
  if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true) return e.status;
  return 500;
}

/**
 * A JSON error body: the registry's code and its message for the operator,
 * never a stack trace. Unexpected errors are logged in full and answered
 * with a generic message.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, logger: Logger): void {
  const status = statusOf(err);
  if (status === 500) logger.error({ err, method: req.method, url: req.url }, 'request failed');
  if (res.headersSent) {
    // Mid-body: the only honest signal left is cutting the connection.
    res.destroy();
    return;
  }
  const body = Buffer.from(
    JSON.stringify(
      isMirrorError(err)
        ? err.toJSON()
        : status !== 500
          ? { code: 'MM_BAD_REQUEST', message: (err as Error).message }
          : { code: 'MM_INTERNAL', message: 'internal error; the server log has the details' },
    ) + '\n',
  );
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', body.length);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (status === 405) res.setHeader('Allow', 'GET, HEAD');
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  addBytes(res, body.length);
  res.end(body);
}
