import { mkdir, chmod, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Config } from '../config/load.js';
import { ExitCode } from '../errors.js';
import { createLogger } from '../log.js';
import { Layout } from '../store/layout.js';
import { startDaemon } from './daemon.js';
import { WorkerPool } from './worker-pool.js';

/** How long in-flight HTTP downloads and TFTP transfers may take to finish on shutdown (startDaemon's default). */
const DRAIN_MS = 10_000;

/**
 * `maas-mirror serve` with http.workers above 1: this process owns everything
 * stateful (syncs and schedule, TFTP, API, metrics, status, uploads,
 * pull-through downloads) and answers the workers on a unix socket; the
 * workers (http-worker.ts) take the HTTP connections. SIGHUP reloads here and
 * then in every worker; SIGTERM drains the workers, then this process.
 */
export async function serveWithWorkers(file: string, config: Config): Promise<number> {
  const destination = pino.destination({ dest: 1, sync: false });
  const logger = createLogger({ destination });
  const socketPath = await socketFor(new Layout(config.dataDir));
  // Created before the daemon, which publishes to it; started after, once the socket answers.
  const daemonRef: { config?: () => Config } = {};
  // A worker may fail to listen while the daemon is still starting: kept until the loop below looks.
  let failure: { code: string | undefined; message: string } | undefined;
  let onFailure: () => void = () => undefined;
  const pool = new WorkerPool({
    count: config.http.workers ?? 1,
    socketPath,
    drainMs: DRAIN_MS,
    logger: logger.child({ component: 'http-workers' }),
    config: () => daemonRef.config?.() ?? config,
    writeLog: (text) => destination.write(text),
    onFailed: (code, message) => {
      failure ??= { code, message };
      onFailure();
    },
  });
  const daemon = await startDaemon({
    config,
    logger,
    drainMs: DRAIN_MS,
    workers: { socketPath, view: pool, afterPublish: () => pool.invalidate(), beforeStart: () => pool.start() },
  });
  daemonRef.config = () => daemon.config();
  logger.info({ workers: config.http.workers }, 'HTTP served by worker processes');
  let exitCode: number = ExitCode.ok;
  await new Promise<void>((resolve) => {
    const onHup = () => {
      if (!daemon.reload(file)) return;
      void pool.reconfigure(daemon.config()).then(() => logger.info({ workers: pool.count().running }, 'configuration reloaded in the HTTP workers'));
    };
    let stopping = false;
    const onStop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping: draining downloads and transfers');
      process.off('SIGHUP', onHup);
      daemon.ops.setDraining();
      void pool
        .drain()
        .then(() => daemon.stop())
        .then(resolve);
    };
    process.on('SIGHUP', onHup);
    process.once('SIGTERM', () => onStop('SIGTERM'));
    process.once('SIGINT', () => onStop('SIGINT'));
    onFailure = () => {
      if (stopping || !failure) return;
      // As a single process would: the listen error ends the service, with its message.
      logger.error({ code: failure.code }, `an HTTP worker cannot serve: ${failure.message}`);
      process.stderr.write(`maas-mirror: ${failure.message}\n`);
      exitCode = ExitCode.failed;
      onStop('worker failure');
    };
    onFailure();
  });
  logger.flush();
  return exitCode;
}

/**
 * The primary's socket, in a folder only this user may enter. Named by pid,
 * so a second `serve` on the same dataDir never takes another's; the ones
 * left by a primary that died are removed.
 */
async function socketFor(layout: Layout): Promise<string> {
  const dir = join(layout.stateDir, 'run');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  for (const name of await readdir(dir)) {
    const pid = /^http-(\d+)\.sock$/.exec(name)?.[1];
    if (pid !== undefined && !alive(Number(pid))) await unlink(join(dir, name)).catch(() => undefined);
  }
  return join(dir, `http-${process.pid}.sock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
