import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../config/load.js';
import type { Logger } from '../log.js';
import { bearerToken, tokenMatches } from './auth.js';
import { handleImageUpload } from './image-upload.js';
import { ShuttingDownError, SyncRunningError, type SyncCoordinator } from './coordinator.js';
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
      sendJson(res, 404, { code: 'MM_API_DISABLED', message: 'the API is off: set api.token (or MAAS_MIRROR_API_TOKEN) on the daemon and reload it' });
      return;
    }
    const header = req.headers.authorization;
    if (!tokenMatches(bearerToken(header), expected)) {
      // The client and whether a token was sent: never the header itself.
      log.warn({ client: req.socket.remoteAddress, method: req.method, path: req.path, tokenSent: header !== undefined }, 'API request refused: missing or wrong token');
      res.setHeader('WWW-Authenticate', 'Bearer realm="maas-mirror"');
      sendJson(res, 401, { code: 'MM_UNAUTHORIZED', message: 'send Authorization: Bearer <api.token>' });
      return;
    }
    next();
  });

  router.post('/sync', (req: Request, res: Response) => {
    try {
      const { id } = deps.coordinator.start('api');
      log.info({ sync: id, client: req.socket.remoteAddress }, `sync ${id} started by an API request`);
      res.setHeader('Location', `${req.baseUrl}/status`);
      sendJson(res, 202, { id });
    } catch (err) {
      if (err instanceof SyncRunningError) {
        sendJson(res, 409, { running: err.running, code: err.code, message: err.message });
      } else if (err instanceof ShuttingDownError) {
        sendJson(res, 503, { code: err.code, message: err.message });
      } else {
        throw err;
      }
    }
  });

  router.post('/images', (req: Request, res: Response) => handleImageUpload({ config: deps.config, logger: log, onPublished: deps.onPublished }, req, res));

  router.get('/status', async (_req: Request, res: Response) => {
    sendJson(res, 200, await deps.status());
  });

  router.use((req: Request, res: Response) => {
    const known = req.path === '/sync' || req.path === '/status' || req.path === '/images';
    if (known) res.setHeader('Allow', req.path === '/status' ? 'GET, HEAD' : 'POST');
    sendJson(res, known ? 405 : 404, {
      code: known ? 'MM_METHOD_NOT_ALLOWED' : 'MM_NOT_FOUND',
      message: known ? `${req.method} is not allowed here` : 'no such API route; there are POST /api/v1/sync, POST /api/v1/images and GET /api/v1/status',
    });
  });

  return router;
}

/**
 * JSON with `error` as well as `message`: the trigger client reads `error`,
 * the rest of the server's JSON errors say `message`.
 */
function sendJson(res: Response, status: number, body: object): void {
  const payload = 'message' in body && !('error' in body) ? { ...body, error: (body as { message: string }).message } : body;
  res.status(status).type('application/json').send(JSON.stringify(payload) + '\n');
}
