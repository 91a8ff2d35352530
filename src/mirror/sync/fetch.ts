import PQueue from 'p-queue';
import { AbortedError } from '../../errors.js';
import { downloadBlob } from '../download.js';
import { isFolderSource } from '../folder.js';
import { importBlob } from '../import-file.js';
import { HashPool } from '../hash-pool.js';
import { RateLimiter } from '../ratelimit.js';
import type { WantedFile } from '../select.js';
import type { SyncRun } from './context.js';
import { errMessage, failureOf } from './report.js';

export interface Fetched {
  readonly files: number;
  readonly bytes: number;
}

/**
 * Phase 4: download what the store lacks, `download.concurrency` at a time. Each file that
 * arrives verified joins `held`; one that fails is reported and its version stays out.
 */
export async function fetchMissing(run: SyncRun, missing: readonly WantedFile[], held: Set<string>): Promise<Fetched> {
  const { config, opts, progress, hooks, log } = run;
  progress.setPhase('download');
  progress.plan(missing.length, missing.reduce((n, f) => n + f.size, 0));
  const aborted = () => new AbortedError('the sync was aborted; partial files are kept and will be resumed');
  if (missing.length === 0) {
    if (opts.signal?.aborted) throw aborted();
    return { files: 0, bytes: 0 };
  }
  const limiter = new RateLimiter(config.download.rateLimit);
  // From a disk the copy hashes as it reads: the pool is for network downloads only.
  const hashes = missing.some((f) => !isFolderSource(f.url)) ? new HashPool() : undefined;
  const queue = new PQueue({ concurrency: config.download.concurrency });
  let files = 0;
  let bytes = 0;
  const fetchOne = async (f: WantedFile): Promise<void> => {
    if (opts.signal?.aborted) return;
    progress.start(f.path);
    const onBytes = (n: number) => {
      bytes += n;
      progress.bytes(n);
      hooks.onDownloadedBytes?.(f.source, n);
    };
    try {
      // From a disk: no retries (a bad file stays bad), no hash pool.
      const r = isFolderSource(f.url)
        ? await importBlob(f, { layout: run.layout, store: run.store, signal: opts.signal, onBytes })
        : await downloadBlob(f, {
            client: run.client,
            layout: run.layout,
            store: run.store,
            hashes: hashes!,
            retries: config.download.retries,
            limiter,
            signal: opts.signal,
            retryBaseMs: opts.retryBaseMs,
            stripes: config.download.stripes,
            stripeSize: config.download.stripeSize,
            onBytes,
            onRetry: (err, attempt, delay) => {
              hooks.onRetry?.(f.source);
              log.warn({ source: f.source, path: f.path, attempt, delayMs: delay, err: errMessage(err) }, 'retrying download');
            },
            onChecksumFailure: (err) => {
              hooks.onChecksumFailure?.(f.source);
              log.warn({ source: f.source, path: f.path, code: err.code }, err.message);
            },
          });
      held.add(f.sha256);
      files++;
      progress.finish(f.path);
      log.debug({ path: f.path, bytes: f.size, resumedFrom: r.resumedFrom }, 'stored');
    } catch (err) {
      progress.drop(f.path);
      if (err instanceof AbortedError || opts.signal?.aborted) return;
      const fl = run.failures.add({ ...failureOf(f.source, err), path: f.path, url: f.url });
      log.error({ source: f.source, path: f.path, code: fl.code }, fl.message);
    }
  };
  try {
    for (const f of missing) {
      // Fed as slots free up: 40,000 waiting tasks (closures and promises) would sit in memory for the whole download.
      await queue.onSizeLessThan(config.download.concurrency);
      void queue.add(() => fetchOne(f));
    }
    await queue.onIdle();
  } finally {
    await hashes?.close();
  }
  if (opts.signal?.aborted) throw aborted();
  return { files, bytes };
}
