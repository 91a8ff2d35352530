import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MirrorMetrics } from './metrics.js';
import { classifyRoute, methodLabel } from './routes.js';

/**
 * Works as express middleware and as a plain hook called first thing in the
 * server's request listener: the listening server answers file requests
 * without express, and those are the ones worth measuring.
 */
export type RequestObserver = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;

const observed = new WeakSet<ServerResponse>();

export function httpMetricsMiddleware(metrics: MirrorMetrics, options: { prefix: string | (() => string) }): RequestObserver {
  const p = options.prefix;
  const prefix = typeof p === 'function' ? p : () => p;
  return (req, res, next) => {
    // Installed both in the server and in express: count each response once.
    if (!observed.has(res)) {
      observed.add(res);
      observe(metrics, prefix(), req, res);
    }
    next?.();
  };
}

function observe(metrics: MirrorMetrics, prefix: string, req: IncomingMessage, res: ServerResponse): void {
  const start = process.hrtime.bigint();
  const route = classifyRoute(req.url ?? '', prefix);
  const method = methodLabel(req.method);
  const sent = metrics.httpSentBytes.labels(route);
  if (method !== 'HEAD') {
    // Counted as written, not at the end, so a long download shows up while it runs.
    const write = res.write;
    const end = res.end;
    res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      sent.inc(byteLength(chunk, rest[0]));
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as ServerResponse['write'];
    res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
      if (typeof chunk !== 'function') sent.inc(byteLength(chunk, rest[0]));
      return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
    } as ServerResponse['end'];
  }
  res.once('close', () => {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    metrics.httpDuration.observe({ route, method, status: String(res.statusCode) }, seconds);
  });
}

function byteLength(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk.byteLength;
  return 0;
}
