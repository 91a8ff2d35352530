import { readlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Config, Listen } from '../config/load.js';
import { loadConfig } from '../config/load.js';
import { AbortedError, ArchiveRefusedError, isMirrorError, LockedError, REPORT_CODES } from '../errors.js';
import { startHttpServer, type HttpServerHandle } from '../http/index.js';
import type { Logger } from '../log.js';
import { PullThroughService } from '../mirror/pull-through.js';
import { createOps, isImageUpload, OPS_PATHS, type HttpWorkersView, type Ops } from '../ops/index.js';
import { BlobStore } from '../store/blobs.js';
import { archiveLimits } from '../store/archive-unpack.js';
import { bootFilesConfig } from '../store/boot-files.js';
import { unpackBootloaders } from '../store/bootloaders.js';
import { acquireLock, type Lock } from '../store/lock.js';
import { Layout } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { Resolver } from '../store/resolver.js';
import { currentSnapshotId } from '../store/snapshots.js';
import { TftpServer, forwardingOpener } from '../tftp/index.js';
import { namespaceOpener, STORE_OPENER_MODULE, storeOpenerData } from './tftp-open.js';

export interface DaemonOptions {
  config: Config;
  logger: Logger;
  /** Listen addresses that override the config (the demo, tests). */
  httpListen?: readonly Listen[];
  tftpListen?: readonly Listen[];
  /** How long in-flight HTTP downloads and TFTP transfers may take to finish on shutdown. */
  drainMs?: number;
  /** Retry backoff base for syncs (tests shorten it). */
  retryBaseMs?: number;
  /** The owner's side of http.workers (http-cluster.ts): HTTP on this socket only, for the workers. */
  workers?: {
    readonly socketPath: string;
    readonly view: HttpWorkersView;
    /** After each publish, once this process dropped its caches: the workers drop theirs. */
    readonly afterPublish: () => Promise<void>;
    /** Once the socket answers, before the schedule starts: brings the workers up (the ports open before any sync). */
    readonly beforeStart: () => Promise<void>;
  };
}

export interface Daemon {
  readonly ops: Ops;
  readonly http: HttpServerHandle;
  readonly tftp: TftpServer | undefined;
  readonly tftpAddresses: readonly Listen[];
  /** Settles when the start-up repair of the bootloaders is over (done, refused or not needed). */
  readonly bootloadersRepaired: Promise<void>;
  config(): Config;
  /** Re-reads the config file; an invalid one is reported and the old one kept. */
  reload(file: string): boolean;
  stop(): Promise<void>;
}

/**
 * The long-running process: HTTP (tree, rack proxy, bootloaders, API,
 * metrics, status page), TFTP, and scheduled syncs. Serving never waits on
 * upstream or on a running sync: it reads whatever `current` points to.
 */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  let config = opts.config;
  const { logger } = opts;
  const layout = new Layout(config.dataDir);
  const store = new BlobStore(layout);
  const namespace = new Resolver({ layout, logger, bootFiles: () => bootFilesConfig(config) });
  // Created after ops (which needs the publish hook), used by that hook.
  const late: { http?: HttpServerHandle; tftp?: TftpServer; repair?: Promise<void> } = {};
  const ops = createOps({
    config: () => config,
    logger,
    syncOptions: opts.retryBaseMs === undefined ? undefined : { retryBaseMs: opts.retryBaseMs },
    // A sync waits for the start-up repair rather than meeting its lock.
    beforeSync: () => late.repair ?? Promise.resolve(),
    onPublished: async () => {
      namespace.invalidate();
      late.http?.invalidate();
      late.tftp?.invalidate();
      await opts.workers?.afterPublish();
    },
    httpWorkers: opts.workers?.view,
  });
  const pull = new PullThroughService({
    layout,
    store,
    logger: logger.child({ component: 'pull-through' }),
    config: () => config,
    onBytes: (source, n) => ops.metrics.downloadedBytes.inc({ source }, n),
  });
  const http = await startHttpServer({
    config,
    layout,
    logger,
    namespace,
    listen: opts.httpListen,
    routes: (app) => ops.routes(app),
    routedPaths: OPS_PATHS,
    streamedBody: isImageUpload,
    pullThrough: pull,
    // With workers, the one that took the request counts and logs it.
    ...(opts.workers ? { socketPath: opts.workers.socketPath, accessLog: false } : { observe: ops.observeHttp }),
  });
  late.http = http;

  let tftp: TftpServer | undefined;
  let tftpAddresses: Listen[] = [];
  if (config.tftp.enabled) {
    const tftpLogger = logger.child({ component: 'tftp' });
    const forward = config.boot.forward;
    tftp = new TftpServer({
      listen: opts.tftpListen ?? config.tftp.listen,
      open: forward
        ? forwardingOpener(namespaceOpener(namespace), {
            ...forward,
            timeoutMs: config.tftp.timeout,
            retries: config.tftp.retries,
            logger: tftpLogger,
          })
        : namespaceOpener(namespace),
      maxBlksize: config.tftp.maxBlksize,
      maxWindowsize: config.tftp.maxWindowsize,
      timeoutMs: config.tftp.timeout,
      retries: config.tftp.retries,
      maxTransfers: config.tftp.maxTransfers,
      maxTransfersPerClient: config.tftp.maxTransfersPerClient,
      firstAckTimeoutMs: config.tftp.firstAckTimeout,
      firstAckResends: config.tftp.firstAckResends,
      logger: tftpLogger,
      // Worker threads build the same opener from plain data: functions cannot cross threads.
      workers: { count: config.tftp.workers, opener: { module: STORE_OPENER_MODULE, name: 'storeWorkerOpener', data: storeOpenerData(config) } },
    });
    try {
      tftpAddresses = await tftp.start();
      ops.observeTftp(tftp);
      late.tftp = tftp;
    } catch (err) {
      // Port 69 needs a capability: say how to fix it, and keep serving HTTP.
      logger.error({ code: isMirrorError(err) ? err.code : undefined }, `TFTP is off: ${(err as Error).message}`);
      tftp = undefined;
    }
  }
  // Served from the moment the ports are open: bootloaders lagging behind `current` (a crash, a
  // rollback, an archive refused before) are repaired in the background.
  const repairAbort = new AbortController();
  const bootloadersRepaired = repairBootloaders(layout, config, logger, repairAbort.signal);
  late.repair = bootloadersRepaired;
  await opts.workers?.beforeStart();
  ops.start();

  let stopping: Promise<void> | undefined;
  return {
    ops,
    http,
    tftp,
    tftpAddresses,
    bootloadersRepaired,
    config: () => config,
    reload(file: string): boolean {
      let next: Config;
      try {
        next = loadConfig(file);
      } catch (err) {
        logger.error({ code: isMirrorError(err) ? err.code : undefined }, `SIGHUP: the new configuration is invalid, keeping the old one: ${(err as Error).message}`);
        return false;
      }
      if (next.dataDir !== config.dataDir) {
        logger.error({ dataDir: next.dataDir }, 'SIGHUP: dataDir cannot change while running; restart the service to move it. Keeping the old configuration');
        return false;
      }
      config = next;
      ops.reload();
      // The main thread's Resolver reads boot.files through `config`; the workers are told.
      tftp?.invalidate(storeOpenerData(next));
      logger.info({ file }, 'configuration reloaded; listen addresses change only on restart');
      return true;
    },
    stop() {
      stopping ??= (async () => {
        const drainMs = opts.drainMs ?? 10_000;
        repairAbort.abort();
        await bootloadersRepaired;
        ops.setDraining();
        await Promise.all([
          ops.shutdown(),
          http.close(drainMs),
          tftp?.stop({ deadlineMs: drainMs }),
        ]);
        await pull.close();
        logger.info('stopped');
      })();
      return stopping;
    },
  };
}

/**
 * After a rollback, a crash between publish and unpack, or an archive refused
 * by a sync, the bootloaders may lag behind `current`. Never throws: a failure
 * is logged (code, product, reason) and the bootloaders there are keep serving.
 */
async function repairBootloaders(layout: Layout, config: Config, logger: Logger, signal: AbortSignal): Promise<void> {
  const log = logger.child({ component: 'bootloaders' });
  let lock: Lock | undefined;
  try {
    const id = await currentSnapshotId(layout);
    if (!id) return;
    const unpacked = await readlink(layout.bootloaders).then(basename, () => undefined);
    if (unpacked === id) return;
    // A sync running now (the CLI's) unpacks its own snapshot: the lock keeps the two apart.
    lock = await acquireLock(layout.lockFile, 'bootloader repair');
    await unpackBootloaders(layout, await readManifest(layout, id), logger, {
      limits: archiveLimits(config.bootloaders),
      signal,
      beforeSwitch: async () => (await currentSnapshotId(layout)) === id,
    });
  } catch (err) {
    if (err instanceof AbortedError) return;
    if (err instanceof LockedError) {
      log.info(`bootloaders not repaired at start-up: ${err.message}`);
      return;
    }
    log.error(
      {
        code: isMirrorError(err) ? err.code : REPORT_CODES.internal,
        ...(err instanceof ArchiveRefusedError ? { product: err.productId, archive: err.archive, reason: err.reason } : {}),
      },
      `bootloaders of the current snapshot could not be unpacked, the previous ones stay: ${(err as Error).message}`,
    );
  } finally {
    await lock?.release().catch(() => undefined);
  }
}
