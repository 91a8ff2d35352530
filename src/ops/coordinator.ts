import { EventEmitter } from 'node:events';
import type { Config } from '../config/load.js';
import { AbortedError, isMirrorError, LockedError, REPORT_CODES, ShuttingDownError, SyncRunningError } from '../errors.js';
import type { Logger } from '../log.js';
import { SyncProgress } from '../mirror/progress.js';
import type { SyncWarning } from '../mirror/selection-warnings.js';
import { newSyncId, runSync, type SyncFailure, type SyncHooks, type SyncOptions, type SyncReport } from '../mirror/sync.js';
import { readHistory, writeHistory } from './history.js';
import { syncHooks, type MirrorMetrics, type SyncRunResult } from './metrics.js';

/** Why a sync started: shown in the status and the logs. */
export type SyncReason = 'start' | 'schedule' | 'api' | (string & {});

/** One finished (or skipped) sync as the daemon remembers it. */
export interface SyncRecord {
  readonly id: string;
  readonly reason: SyncReason;
  /** runSync's result, or aborted (shutdown), or locked (skipped: another process held the dataDir lock). */
  readonly result: SyncRunResult;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  readonly failures: readonly SyncFailure[];
  /** Filters matching nothing upstream, products dropped from the tree (see SyncWarning). */
  readonly warnings: readonly SyncWarning[];
  /** How many failures there were, when `failures` was cut short for the history file. */
  readonly failuresTotal?: number;
  /** Each source this sync read and how that went (empty when the sync never got to read them). */
  readonly sources: readonly { readonly name: string; readonly result: 'ok' | 'partial' | 'failed' }[];
  /** The snapshot current after the sync; `published` says whether this sync made it. */
  readonly snapshot: string | null;
  readonly published: boolean;
  readonly downloaded: { readonly files: number; readonly bytes: number };
  /** Why the sync did not run or stopped early (locked, aborted, an unexpected error). */
  readonly error: { readonly code: string; readonly message: string } | null;
}

export interface RunningSync {
  readonly id: string;
  readonly reason: SyncReason;
  readonly startedAt: string;
  readonly progress: SyncProgress;
}

export { ShuttingDownError, SyncRunningError } from '../errors.js';

export interface CoordinatorOptions {
  /** A getter: SIGHUP swaps the configuration, and the next sync uses the new one. */
  readonly config: () => Config;
  readonly logger: Logger;
  readonly metrics?: MirrorMetrics;
  /** Called once a new snapshot is current (the HTTP server drops its caches here). */
  readonly onPublished?: (snapshotId: string) => void | Promise<void>;
  /** Extra runSync hooks, after the metrics'. */
  readonly hooks?: SyncHooks;
  /** Finished syncs kept for the status; default 20. */
  readonly historySize?: number;
  /** Passed to runSync (tests shorten retry backoff). */
  readonly syncOptions?: Pick<SyncOptions, 'retryBaseMs'>;
  /** Awaited at the start of each run (the daemon's start-up repair of bootloaders, which holds the lock). */
  readonly before?: () => Promise<void>;
}

export interface CoordinatorEvents {
  start: [RunningSync];
  end: [SyncRecord];
}

/**
 * The daemon's single owner of syncs: the scheduler and the API both ask it,
 * and it runs at most one at a time. A `maas-mirror sync` from cron in
 * another process takes the same dataDir lock; meeting it is not a failure,
 * the daemon's run is recorded as skipped ("locked").
 */
export class SyncCoordinator extends EventEmitter<CoordinatorEvents> {
  private current: { info: RunningSync; abort: AbortController; done: Promise<SyncRecord> } | undefined;
  private readonly records: SyncRecord[] = [];
  private restored: Promise<void> | undefined;
  private saving: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly historySize: number;

  constructor(private readonly options: CoordinatorOptions) {
    super();
    this.historySize = options.historySize ?? 20;
  }

  get running(): RunningSync | undefined {
    return this.current?.info;
  }

  /** The newest record, skipped ones included (the trigger client waits for its id here). */
  get lastSync(): SyncRecord | undefined {
    return this.records[0];
  }

  /** Newest first, at most historySize. */
  get history(): readonly SyncRecord[] {
    return this.records;
  }

  /**
   * Reads the records an earlier daemon left in state/_history.json, once;
   * the status awaits it so the page shows the last sync after a restart.
   */
  restoreHistory(): Promise<void> {
    this.restored ??= readHistory(this.options.config().dataDir, this.historySize).then((old) => {
      const known = new Set(this.records.map((r) => r.id));
      this.records.push(...old.filter((r) => !known.has(r.id)));
      this.records.length = Math.min(this.records.length, this.historySize);
    });
    return this.restored;
  }

  /** Resolves once the records written so far are on disk. */
  flushHistory(): Promise<void> {
    return this.saving;
  }

  private save(): void {
    const records = [...this.records];
    const dataDir = this.options.config().dataDir;
    // One write at a time, in order: the file always ends with the newest list.
    this.saving = this.saving.then(() =>
      writeHistory(dataDir, records).catch((err: unknown) => {
        this.options.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not save the sync history; the status page forgets it at restart');
      }),
    );
  }

  /**
   * Starts a sync now and returns its id at once; `done` resolves with its
   * record (never rejects). Throws SyncRunningError when one is running.
   */
  start(reason: SyncReason): { id: string; done: Promise<SyncRecord> } {
    if (this.closed) throw new ShuttingDownError();
    if (this.current) throw new SyncRunningError(this.current.info.id);
    const id = newSyncId();
    const info: RunningSync = { id, reason, startedAt: new Date().toISOString(), progress: new SyncProgress() };
    const abort = new AbortController();
    const done = this.run(info, abort.signal)
      // run() records every failure itself; this is for a throw before it could (a broken config getter).
      .catch((err: unknown): SyncRecord => ({
        id,
        reason,
        result: 'failed',
        startedAt: info.startedAt,
        finishedAt: new Date().toISOString(),
        durationMs: Date.now() - Date.parse(info.startedAt),
        failures: [],
        warnings: [],
        sources: [],
        snapshot: null,
        published: false,
        downloaded: { files: 0, bytes: 0 },
        error: { code: isMirrorError(err) ? err.code : REPORT_CODES.internal, message: err instanceof Error ? err.message : String(err) },
      }))
      .then(async (record) => {
        await this.restoreHistory();
        this.current = undefined;
        this.records.unshift(record);
        this.records.length = Math.min(this.records.length, this.historySize);
        // Written before anyone hears of the end: whoever awaits `done` may remove dataDir next.
        this.save();
        await this.saving;
        this.emit('end', record);
        return record;
      });
    this.current = { info, abort, done };
    this.emit('start', info);
    return { id, done };
  }

  /** Stops the running sync, if any, and resolves when it has ended. Partial downloads are kept for the next sync to resume. */
  async abort(): Promise<SyncRecord | undefined> {
    const c = this.current;
    if (!c) return undefined;
    c.abort.abort();
    return c.done;
  }

  /** Shutdown: no new syncs, and the running one is aborted. */
  async close(): Promise<void> {
    this.closed = true;
    await this.abort();
    await this.saving;
  }

  private async run(info: RunningSync, signal: AbortSignal): Promise<SyncRecord> {
    await this.options.before?.();
    const started = Date.now();
    const config = this.options.config();
    const log = this.options.logger.child({ component: 'sync', reason: info.reason });
    const metrics = this.options.metrics;
    // Sources runSync reported on; the others get the daemon's outcome below.
    const reported = new Set<string>();
    const hooks = combineHooks(
      metrics ? syncHooks(metrics) : {},
      { onSourceDone: (source) => void reported.add(source) },
      this.options.hooks ?? {},
      {
        onPublished: async (snapshot) => {
          // The snapshot is current already: a failing listener must not turn the sync into a failure.
          try {
            await this.options.onPublished?.(snapshot);
          } catch (err) {
            log.error({ sync: info.id, snapshot, err: err instanceof Error ? err.message : String(err) }, 'onPublished listener failed');
          }
        },
      },
    );
    const base = {
      id: info.id,
      reason: info.reason,
      startedAt: info.startedAt,
    };
    let record: SyncRecord;
    log.info({ sync: info.id }, `sync ${info.id} started (${info.reason})`);
    try {
      const report = await runSync({
        ...this.options.syncOptions,
        config,
        logger: log,
        id: info.id,
        progress: info.progress,
        signal,
        hooks,
      });
      record = fromReport(base, report);
      log.info(
        { sync: info.id, result: report.result, snapshot: report.snapshot, published: report.published, failures: report.failures.length, durationMs: report.durationMs },
        `sync ${info.id} ended: ${report.result}`,
      );
    } catch (err) {
      const result: SyncRunResult = err instanceof LockedError ? 'locked' : err instanceof AbortedError || signal.aborted ? 'aborted' : 'failed';
      const error = isMirrorError(err) ? { code: err.code, message: err.message } : { code: REPORT_CODES.internal, message: err instanceof Error ? err.message : String(err) };
      record = {
        ...base,
        result,
        finishedAt: new Date().toISOString(),
        durationMs: Date.now() - started,
        failures: [],
        warnings: [],
        sources: [],
        snapshot: null,
        published: false,
        downloaded: { files: 0, bytes: 0 },
        error,
      };
      if (result === 'locked') {
        // cron's `maas-mirror sync` is doing the work right now: nothing is wrong.
        log.info({ sync: info.id, code: error.code }, `sync ${info.id} skipped: ${error.message}`);
      } else if (result === 'aborted') {
        log.info({ sync: info.id }, `sync ${info.id} aborted; partial downloads are kept and resumed by the next sync`);
      } else {
        log.error({ sync: info.id, code: error.code }, `sync ${info.id} failed: ${error.message}`);
      }
    }
    if (metrics) {
      for (const s of config.sources) if (!reported.has(s.name)) metrics.recordSourceRun(s.name, record.result);
      if (record.result !== 'locked') await metrics.refreshStore();
    }
    return record;
  }
}

function fromReport(base: Pick<SyncRecord, 'id' | 'reason' | 'startedAt'>, r: SyncReport): SyncRecord {
  return {
    ...base,
    result: r.result,
    finishedAt: r.finishedAt,
    durationMs: r.durationMs,
    failures: r.failures,
    warnings: r.warnings,
    sources: r.sources.map((s) => ({ name: s.name, result: s.result })),
    snapshot: r.snapshot ?? null,
    published: r.published,
    downloaded: r.downloaded,
    error: null,
  };
}

/** Calls each hook in order; onPublished's are awaited one after the other. */
export function combineHooks(...all: SyncHooks[]): SyncHooks {
  const each =
    <K extends keyof SyncHooks>(k: K) =>
    (...args: Parameters<NonNullable<SyncHooks[K]>>) => {
      for (const h of all) (h[k] as ((...a: typeof args) => unknown) | undefined)?.(...args);
    };
  return {
    onDownloadedBytes: each('onDownloadedBytes'),
    onRetry: each('onRetry'),
    onSignatureFailure: each('onSignatureFailure'),
    onChecksumFailure: each('onChecksumFailure'),
    onSourceDone: each('onSourceDone'),
    onGc: each('onGc'),
    onPublished: async (id) => {
      for (const h of all) await h.onPublished?.(id);
    },
  };
}
