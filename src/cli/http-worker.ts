import cluster from 'node:cluster';
import { ExitCode, isMirrorError } from '../errors.js';
import { createForwarder } from '../http/forward.js';
import { DEFAULT_MAX_CONNECTIONS } from '../http/server.js';
import { startHttpServer } from '../http/index.js';
import { createLogger } from '../log.js';
import { createMetrics, healthRouter, httpMetricsMiddleware, isImageUpload, OPS_PATHS, Readiness } from '../ops/index.js';
import { bootFilesConfig } from '../store/boot-files.js';
import { Layout } from '../store/layout.js';
import { Resolver } from '../store/resolver.js';
import type { FromWorker, ToWorker } from './worker-messages.js';
import { WorkerLogSink } from './worker-log.js';

/** A worker told nothing this long after it started has lost its primary. */
const START_TIMEOUT_MS = 30_000;

/**
 * One of the http.workers processes (forked by worker-pool.ts). It serves the
 * read paths itself (tree, hash paths, bootloaders, boot files, keyrings,
 * health) from the dataDir, and forwards the rest to the primary, which owns
 * every piece of state: syncs, the API, metrics, status, uploads and the
 * pull-through downloads. It counts and logs every request it took.
 */
export async function runHttpWorker(): Promise<number> {
  const start = await firstMessage();
  // Told to stop before it was told to start (a shutdown while it came up): nothing to drain.
  if (!start) return 0;
  const sink = new WorkerLogSink((text, done) => {
    if (process.connected) process.send!({ type: 'log', text } satisfies FromWorker, undefined, undefined, done);
    else done();
  });
  const logger = createLogger({ destination: sink }).child({ worker: cluster.worker?.id ?? 0 });
  let config = start.config;
  const layout = new Layout(config.dataDir);
  const namespace = new Resolver({ layout, logger, bootFiles: () => bootFilesConfig(config) });
  const metrics = createMetrics({ defaultMetrics: false });
  const readiness = new Readiness(() => config.dataDir);
  const forward = createForwarder(start.socketPath, logger.child({ component: 'http' }), config.http.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  const http = await startHttpServer({
    config,
    layout,
    logger,
    namespace,
    routes: (app) => {
      app.use(healthRouter(readiness));
      app.use((req, res) => forward(req, res));
    },
    routedPaths: OPS_PATHS,
    streamedBody: isImageUpload,
    observe: httpMetricsMiddleware(metrics, { prefix: () => config.http.prefix }),
    pullThrough: async (_file, req, res) => forward(req, res),
  }).catch(async (err: unknown) => {
    process.send!({ type: 'failed', code: isMirrorError(err) ? err.code : undefined, message: (err as Error).message } satisfies FromWorker);
    await sink.flush();
    return undefined;
  });
  if (!http) return ExitCode.failed;
  const reply = (msg: FromWorker) => {
    if (process.connected) process.send!(msg);
  };
  reply({ type: 'listening' });
  logger.info({ pid: process.pid }, 'HTTP worker serving');

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      readiness.setDraining();
      await http.close(start.drainMs);
      forward.close();
      logger.info({ pid: process.pid }, 'HTTP worker stopped');
      await sink.flush();
    })());
  const done = new Promise<void>((resolve) => {
    process.on('message', (msg: ToWorker) => {
      switch (msg.type) {
        case 'invalidate':
          http.invalidate();
          reply({ type: 'ack', id: msg.id });
          break;
        case 'config':
          config = msg.config;
          http.invalidate();
          reply({ type: 'ack', id: msg.id });
          break;
        case 'metrics':
          void metrics.httpJson().then((json) => reply({ type: 'metrics', id: msg.id, json }));
          break;
        case 'drain':
          void stop().then(resolve);
          break;
      }
    });
    // The primary alone reloads; a signal sent to the whole group must not end a worker mid-request.
    process.on('SIGHUP', () => undefined);
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void stop().then(resolve));
  });
  await done;
  return 0;
}

function firstMessage(): Promise<Extract<ToWorker, { type: 'start' }> | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no start message from the main process')), START_TIMEOUT_MS);
    const onMessage = (msg: ToWorker) => {
      if (msg.type !== 'start' && msg.type !== 'drain') return;
      clearTimeout(timer);
      process.off('message', onMessage);
      resolve(msg.type === 'start' ? msg : undefined);
    };
    process.on('message', onMessage);
    process.send!({ type: 'hello' } satisfies FromWorker);
  });
}
