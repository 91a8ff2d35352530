import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.js';

const bodyBytes = new WeakMap<ServerResponse, number>();

/** Body bytes handed to the response, for the access log. */
export function addBytes(res: ServerResponse, n: number): void {
  bodyBytes.set(res, (bodyBytes.get(res) ?? 0) + n);
}

const MAX_LOGGED_PATH = 1024;

/** One JSON line per request once it is over, whether it finished or the client went away. */
export function logAccess(logger: Logger, req: IncomingMessage, res: ServerResponse): void {
  const start = process.hrtime.bigint();
  const url = req.url ?? '';
  res.once('close', () => {
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    logger.info(
      {
        method: req.method,
        path: url.length > MAX_LOGGED_PATH ? `${url.slice(0, MAX_LOGGED_PATH)}…` : url,
        status: res.statusCode,
        bytes: bodyBytes.get(res) ?? 0,
        ms: Math.round(ms * 100) / 100,
        client: req.socket.remoteAddress,
        ...(res.writableFinished ? {} : { aborted: true }),
      },
      'request',
    );
  });
}
