import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../config/load.js';
import { childLogger, type Logger } from '../log.js';
import type { Layout } from '../store/layout.js';
import { Resolver } from '../store/resolver.js';
import { trustedPeers } from './accel.js';
import { AccessLog } from './access-log.js';
import { ContentCache, type ContentCacheOptions } from './content-cache.js';
import { sendError } from './errors.js';
import { createFileHandler } from './handler.js';
import { ReadyAnswers } from './ready-answers.js';
import { createPullThroughHandler, type PullThrough, type PullThroughSource } from './pull-through.js';

/*
 * Two stacks, on purpose (this is the one place that says why). Files (the
 * tree, hash paths, bootloaders, keyrings) are nearly every request a MAAS
 * rack makes and are served by the file handler on node's own req/res:
 * express's router, request/response prototypes and middleware chain cost
 * about five times a cached metadata answer (measured).
 * The few ops routes (/api, /, /status.json, /metrics, /livez, /readyz)
 * want routing, JSON bodies and middleware, and are rare: express serves
 * them. Both sides share what must be one: the access log (AccessLog), the
 * error writer (sendError in errors.ts) and the connection bounds
 * (server.ts). createHttpApp is the express app with the file handler as
 * its catch-all, so the same app serves everything when mounted alone.
 */

/** Requests under this prefix go through express (and the `routes` hook) on the listening server. */
export const ROUTES_PREFIX = '/api';

export interface HttpAppOptions {
  readonly config: Pick<Config, 'http'>;
  readonly layout: Layout;
  readonly logger: Logger;
  /** Share one with the TFTP server; made here when absent. */
  readonly namespace?: Resolver;
  /**
   * Mounts extra routes after the access log and before the read-only
   * catch-all, so they may take other methods than GET/HEAD. On the
   * listening server only paths under /api reach express; everything else
   * is served by the file handler directly (express costs ~5× per request),
   * so mount them under /api/.
   */
  readonly routes?: (app: Express) => void;
  /**
   * The mirror's shared downloads for on-demand items (manifest files with
   * `held: false`); without it such a request answers 503 MM_NOT_HELD. A
   * function instead owns those responses itself (it must then follow the
   * rules held items follow: preconditions, Range, HEAD, addBytes).
   */
  readonly pullThrough?: PullThroughSource | PullThrough;
  readonly cache?: ContentCacheOptions;
  /** false: no access log lines (the owner's side of http.workers: the worker that took the request logs it). */
  readonly accessLog?: boolean;
}

export interface HttpApp extends Express {
  /** Drops cached files, hash answers, manifest indexes and the cached `current`: call after each publish. */
  invalidate(): void;
  readonly namespace: Resolver;
  /** The files side without express: logs and answers one request (what startHttpServer uses outside /api). */
  serveFile(req: IncomingMessage, res: ServerResponse): void;
}

export function createHttpApp(options: HttpAppOptions): HttpApp {
  const logger = childLogger(options.logger, { component: 'http' });
  const namespace = options.namespace ?? new Resolver({ layout: options.layout, logger });
  const cache = new ContentCache(options.cache);
  const ready = new ReadyAnswers();
  const files = createFileHandler({
    namespace,
    cache,
    prefix: options.config.http.prefix,
    keysDir: options.layout.keysDir,
    logger,
    pullThrough: typeof options.pullThrough === 'function' ? options.pullThrough : options.pullThrough && createPullThroughHandler(options.pullThrough, logger),
    ready,
    trustedProxy: trustedPeers(options.config.http.trustedProxies ?? []),
  });

  const access = options.accessLog === false ? { watch: () => undefined } : new AccessLog(logger);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use((req: Request, res: Response, next: NextFunction) => {
    access.watch(req, res, { countWrites: true });
    next();
  });
  options.routes?.(app);
  app.use((req: Request, res: Response, next: NextFunction) => {
    files(req, res)?.catch(next);
  });
  // Express 5 hands rejected promises here; the body never carries a stack.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    sendError(req, res, err, logger);
  });

  return Object.assign(app, {
    invalidate(): void {
      namespace.invalidate();
      cache.clear();
      ready.clear();
    },
    namespace,
    serveFile(req: IncomingMessage, res: ServerResponse): void {
      access.watch(req, res);
      files(req, res)?.catch((err: unknown) => sendError(req, res, err, logger));
    },
  });
}
