import type { Express, Request, Response } from 'express';
import type { Config } from '../config/load.js';
import type { Logger } from '../log.js';
import { apiRouter } from './api.js';
import { SnapshotCatalog } from './catalog.js';
import { SyncCoordinator, type CoordinatorOptions } from './coordinator.js';
import { healthRouter, Readiness } from './health.js';
import { httpMetricsMiddleware, type RequestObserver } from './http-metrics.js';
import { createMetrics, observeTftp, packageVersion, type MetricJson, type MirrorMetrics, type TftpEventsLike } from './metrics.js';
import { Scheduler } from './scheduler.js';
import { fullStatus, publicStatus, type MirrorStatus, type PublicStatus, type StatusDeps } from './status.js';
import { statusPageRouter } from './status-page.js';
import { StoreTotalsCache } from './store-totals.js';

export { SyncCoordinator, SyncRunningError, ShuttingDownError, combineHooks, type SyncRecord, type RunningSync } from './coordinator.js';
export { Scheduler, type ScheduleSettings } from './scheduler.js';
export { MirrorMetrics, createMetrics, syncHooks, observeTftp, httpMetricsMiddleware, type MetricJson } from './metrics.js';
export { classifyRoute, isOpsRequest, OPS_PATHS } from './routes.js';
export { Readiness, healthRouter } from './health.js';
export { apiRouter } from './api.js';
export { isImageUpload } from './image-upload.js';
export { statusPageRouter, renderStatusPage, mirrorUrls, maasCommands } from './status-page.js';
export { SnapshotCatalog } from './catalog.js';
export { StoreTotalsCache } from './store-totals.js';
export type { MirrorStatus, PublicStatus } from './status.js';

export interface OpsOptions {
  /** A getter: after SIGHUP it returns the new configuration; then call reload(). */
  readonly config: () => Config;
  readonly logger: Logger;
  /** Called once a new snapshot is current: give it the HTTP server's invalidate(). */
  readonly onPublished?: (snapshotId: string) => void | Promise<void>;
  /** build_info's version (package.json's by default). */
  readonly version?: string;
  /** Awaited before each sync runs (see CoordinatorOptions.before). */
  readonly beforeSync?: () => Promise<void>;
  /** The scheduler's jitter source; tests pin it. */
  readonly random?: () => number;
  readonly syncOptions?: CoordinatorOptions['syncOptions'];
  /** Node process metrics (default true). */
  readonly defaultMetrics?: boolean;
  /**
   * With http.workers above 1: the workers count the HTTP requests (the
   * routes here then count none), /metrics adds theirs to this process's
   * metrics, and the status says how many serve.
   */
  readonly httpWorkers?: HttpWorkersView;
}

/** What the owner of http.workers knows of its workers. */
export interface HttpWorkersView {
  /** Each running worker's HTTP metrics (prom-client's JSON form). */
  metrics(): Promise<MetricJson[]>;
  /** Workers configured, and those running now. */
  count(): { readonly configured: number; readonly running: number };
}

/** Everything the daemon runs besides the HTTP and TFTP servers, wired together. */
export interface Ops {
  readonly metrics: MirrorMetrics;
  readonly coordinator: SyncCoordinator;
  readonly scheduler: Scheduler;
  readonly readiness: Readiness;
  readonly catalog: SnapshotCatalog;
  readonly storeTotals: StoreTotalsCache;
  /** Counts HTTP requests: call first thing in the server's request listener (also works as express middleware). */
  readonly observeHttp: RequestObserver;
  /** For createHttpApp's `routes` option: /metrics, /livez, /readyz, /api/v1, / and /status.json. */
  routes(app: Express): void;
  /** Counts the TFTP server's transfers; returns the function that stops it. */
  observeTftp(server: TftpEventsLike): () => void;
  publicStatus(): Promise<PublicStatus>;
  status(): Promise<MirrorStatus>;
  /** Measures the store and starts the schedule (the first sync runs now if schedule.onStart). */
  start(): void;
  /** After the config getter changed (SIGHUP): new sources' series, new schedule, token re-read per request. */
  reload(): void;
  /** /readyz answers 503 from now on. */
  setDraining(): void;
  /** Draining, no more scheduled or API syncs, the running one aborted (partial files kept). */
  shutdown(): Promise<void>;
}

export function createOps(options: OpsOptions): Ops {
  const dataDir = () => options.config().dataDir;
  const version = options.version ?? packageVersion();
  const catalog = new SnapshotCatalog(dataDir);
  const storeTotals = new StoreTotalsCache(dataDir);
  const metrics = createMetrics({ version, catalog, storeTotals, defaultMetrics: options.defaultMetrics });
  const coordinator = new SyncCoordinator({
    config: options.config,
    logger: options.logger,
    metrics,
    onPublished: options.onPublished,
    syncOptions: options.syncOptions,
    before: options.beforeSync,
  });
  const scheduler = new Scheduler({
    schedule: () => options.config().schedule,
    job: async () => {
      const { done } = coordinator.start('schedule');
      const record = await done;
      // partial too: a source or some items did not come; a locked or aborted run is not the mirror's failure.
      return { failed: record.result === 'failed' || record.result === 'partial' };
    },
    logger: options.logger,
    random: options.random,
  });
  const readiness = new Readiness(dataDir);
  const httpWorkers = options.httpWorkers;
  const statusDeps: StatusDeps = {
    config: options.config,
    coordinator,
    catalog,
    storeTotals,
    scheduler,
    version,
    httpWorkers: httpWorkers ? () => httpWorkers.count() : undefined,
  };
  const observeHttp = httpMetricsMiddleware(metrics, { prefix: () => options.config().http.prefix });

  return {
    metrics,
    coordinator,
    scheduler,
    readiness,
    catalog,
    storeTotals,
    observeHttp,
    routes(app: Express) {
      if (!options.httpWorkers) app.use(observeHttp);
      app.get('/metrics', async (_req: Request, res: Response) => {
        const { contentType, body } = await metrics.exposition(await options.httpWorkers?.metrics());
        res.setHeader('Cache-Control', 'no-store');
        res.type(contentType).send(body);
      });
      app.use(healthRouter(readiness));
      app.use('/api/v1', apiRouter({ config: options.config, coordinator, status: () => fullStatus(statusDeps), logger: options.logger, onPublished: options.onPublished }));
      app.use(statusPageRouter({ config: options.config, status: () => publicStatus(statusDeps) }));
    },
    observeTftp: (server) => observeTftp(metrics, server),
    publicStatus: () => publicStatus(statusDeps),
    status: () => fullStatus(statusDeps),
    start() {
      metrics.initSources(options.config().sources.map((s) => s.name));
      void storeTotals.refresh();
      scheduler.start();
    },
    reload() {
      metrics.initSources(options.config().sources.map((s) => s.name));
      scheduler.reschedule();
    },
    setDraining: () => readiness.setDraining(),
    async shutdown() {
      readiness.setDraining();
      scheduler.stop();
      await coordinator.close();
    },
  };
}
