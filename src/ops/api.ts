import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../config/load.js';
import { ApiDisabledError, MethodNotAllowedError, NotFoundError, UnauthorizedError } from '../errors.js';
import { sendError } from '../http/errors.js';
import type { Logger } from '../log.js';
import { bearerToken, tokenMatches } from './auth.js';
import type { SyncCoordinator } from './coordinator.js';
import { imageUploadHandler } from './image-upload.js';
import type { MirrorStatus } from './status.js';

export interface ApiDeps {
  /** A getter: SIGHUP may set, change or remove the token. */
  readonly config: () => Config;
  readonly coordinator: SyncCoordinator;
  readonly status: () => Promise<MirrorStatus>;
  readonly logger: Logger;
  /** Told when POST /images published a snapshot (the daemon drops its caches). */
  readonly onPublished?: (snapshotId: string) => void | Promise<void>;
}

/**
 * /api/v1, mounted with app.use('/api/v1', apiRouter(deps)).
 *
 * Every route needs `Authorization: Bearer <api.token>`, GET /status too:
 * the API is the control surface, one rule for all of it is the one nobody
 * gets wrong, and its one client (`sync --trigger`) sends the token anyway.
 * The public, read-only view is GET /status.json (see status-page.ts).
 * Without a token configured the whole API answers 404: off, never open.
 */
export function apiRouter(deps: ApiDeps): Router {
  const log = deps.logger.child({ component: 'api' });
  const router = Router();

  router.use((req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Cache-Control', 'no-store');
    const expected = deps.config().api.token;
    if (!expected) {
      sendError(req, res, new ApiDisabledError(), log);
      return;
    }
    const header = req.headers.authorization;
    if (!tokenMatches(bearerToken(header), expected)) {
      // The client and whether a token was sent: never the header itself.
      log.warn({ client: req.socket.remoteAddress, method: req.method, path: req.path, tokenSent: header !== undefined }, 'API request refused: missing or wrong token');
      sendError(req, res, new UnauthorizedError(), log, { 'WWW-Authenticate': 'Bearer realm="maas-mirror"' });
      return;
    }
    next();
  });

  router.post('/sync', (req: Request, res: Response) => {
    let id: string;
    try {
      ({ id } = deps.coordinator.start('api'));
    } catch (err) {
      // A sync already running (409, with `running`), or shutting down (503): the registry carries the status.
      sendError(req, res, err, log);
      return;
    }
    log.info({ sync: id, client: req.socket.remoteAddress }, `sync ${id} started by an API request`);
    res.setHeader('Location', `${req.baseUrl}/status`);
    sendJson(res, 202, { id });
  });

  router.post('/images', imageUploadHandler({ config: deps.config, logger: log, onPublished: deps.onPublished }));

  router.get('/status', async (req: Request, res: Response) => {
    try {
      sendJson(res, 200, await deps.status());
    } catch (err) {
      sendError(req, res, err, log);
    }
  });

  router.use((req: Request, res: Response) => {
    const known = req.path === '/sync' || req.path === '/status' || req.path === '/images';
    const err = known
      ? new MethodNotAllowedError(req.method, req.path === '/status' ? 'GET, HEAD' : 'POST')
      : new NotFoundError('no such API route; there are POST /api/v1/sync, POST /api/v1/images and GET /api/v1/status');
    sendError(req, res, err, log);
  });

  return router;
}

/** A successful answer; errors go through sendError (src/http/errors.ts). */
function sendJson(res: Response, status: number, body: object): void {
  res.status(status).type('application/json').send(JSON.stringify(body) + '\n');
}
