import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { Router, type Request, type Response } from 'express';
import { Layout } from '../store/layout.js';
import { currentSnapshotId } from '../store/snapshots.js';

export interface ReadinessReport {
  readonly ready: boolean;
  readonly draining: boolean;
  readonly dataDirWritable: boolean;
  readonly snapshot: string | null;
}

/**
 * Ready means worth sending MAAS traffic to: a snapshot is published (else
 * every request 404s or 503s), the dataDir is writable (else syncs fail),
 * and we are not draining for shutdown.
 */
export class Readiness {
  private draining = false;

  constructor(private readonly dataDir: () => string) {}

  /** Shutdown has begun: /readyz answers 503 so load balancers move away first. */
  setDraining(draining = true): void {
    this.draining = draining;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  async check(): Promise<ReadinessReport> {
    const layout = new Layout(this.dataDir());
    const [writable, snapshot] = await Promise.all([
      access(layout.dataDir, constants.W_OK).then(
        () => true,
        () => false,
      ),
      currentSnapshotId(layout).catch(() => undefined),
    ]);
    return {
      ready: !this.draining && writable && snapshot !== undefined,
      draining: this.draining,
      dataDirWritable: writable,
      snapshot: snapshot ?? null,
    };
  }
}

/** GET /livez (the process answers) and GET /readyz (see Readiness). */
export function healthRouter(readiness: Readiness): Router {
  const router = Router();
  router.get('/livez', (_req: Request, res: Response) => {
    res.setHeader('Cache-Control', 'no-store');
    res.type('text/plain').send('ok\n');
  });
  router.get('/readyz', async (_req: Request, res: Response) => {
    const r = await readiness.check();
    res.setHeader('Cache-Control', 'no-store');
    res.status(r.ready ? 200 : 503).json(r);
  });
  return router;
}
