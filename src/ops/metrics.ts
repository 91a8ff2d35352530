import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { PROJECT_ROOT } from '../config/load.js';
import type { SyncHooks } from '../mirror/sync.js';
import type { SnapshotCatalog } from './catalog.js';
import type { StoreTotalsCache } from './store-totals.js';

export { httpMetricsMiddleware, type RequestObserver } from './http-metrics.js';
export { classifyRoute, methodLabel, ROUTE_LABELS, type RouteLabel } from './routes.js';

/** Results of sync_runs_total: runSync's three, plus the two the daemon adds. */
export const SYNC_RESULTS = ['ok', 'partial', 'failed', 'aborted', 'locked'] as const;
export type SyncRunResult = (typeof SYNC_RESULTS)[number];

/** The TFTP server's TransferResult values; anything else is counted as "other". */
export const TFTP_RESULTS = [
  'ok',
  'aborted_by_client',
  'timeout',
  'not_found',
  'access_violation',
  'bad_request',
  'busy',
  'evicted',
  'shutdown',
  'error',
] as const;

/** prom-client's default gauges whose names end in _total; the rest of the process metrics stay. */
const MISNAMED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface MetricsOptions {
  /** build_info's version; package.json's by default. */
  readonly version?: string;
  /** Enables maas_mirror_store_bytes / _blobs (refreshed after syncs, never per scrape). */
  readonly storeTotals?: StoreTotalsCache;
  /** Enables maas_mirror_snapshot_age_seconds. */
  readonly catalog?: SnapshotCatalog;
  /** Node process metrics (default true). */
  readonly defaultMetrics?: boolean;
  readonly now?: () => number;
}

/** Anything with a live count of transfers, like TftpServer. */
export interface ActiveTransfers {
  readonly activeTransfers: number;
}

/**
 * Every metric the daemon exports, in its own registry (never prom-client's
 * global one, so tests and a second instance cannot collide). Label values
 * come from bounded sets only: source names from the configuration, fixed
 * route, result and method names, HTTP status codes. Never a path or a
 * client address.
 */
export class MirrorMetrics {
  readonly registry = new Registry();
  readonly storeTotals: StoreTotalsCache | undefined;
  private readonly now: () => number;
  private readonly tftpSources = new Set<ActiveTransfers>();

  readonly syncRuns: Counter<'source' | 'result'>;
  readonly syncDuration: Histogram<'source'>;
  readonly lastSuccessfulSync: Gauge<'source'>;
  readonly downloadedBytes: Counter<'source'>;
  readonly retries: Counter<'source'>;
  readonly signatureFailures: Counter<'source'>;
  readonly checksumFailures: Counter<'source'>;
  readonly storeBytes: Gauge;
  readonly storeBlobs: Gauge;
  readonly gcReclaimedBytes: Counter;
  readonly snapshotAge: Gauge;
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  readonly httpSentBytes: Counter<'route'>;
  readonly tftpTransfers: Counter<'result'>;
  readonly tftpSentBytes: Counter;
  readonly tftpActive: Gauge;
  readonly buildInfo: Gauge<'version'>;

  constructor(options: MetricsOptions = {}) {
    const registers = [this.registry];
    this.now = options.now ?? Date.now;
    this.storeTotals = options.storeTotals;
    if (options.defaultMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named like counters: promtool (and recording rules using rate()) trip on them.
      for (const name of MISNAMED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }

    this.syncRuns = new Counter({
      name: 'maas_mirror_sync_runs_total',
      help: 'Syncs per source by result (ok, partial, failed, aborted, locked: skipped because another process held the dataDir lock)',
      labelNames: ['source', 'result'],
      registers,
    });
    this.syncDuration = new Histogram({
      name: 'maas_mirror_sync_duration_seconds',
      help: 'Time from the start of a sync to the end of each source',
      labelNames: ['source'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800],
      registers,
    });
    this.lastSuccessfulSync = new Gauge({
      name: 'maas_mirror_last_successful_sync_timestamp_seconds',
      help: 'Unix time of the last sync that ended ok for the source',
      labelNames: ['source'],
      registers,
    });
    this.downloadedBytes = new Counter({
      name: 'maas_mirror_upstream_downloaded_bytes_total',
      help: 'Item bytes received from the upstream',
      labelNames: ['source'],
      registers,
    });
    this.retries = new Counter({
      name: 'maas_mirror_upstream_retries_total',
      help: 'Upstream requests retried after a network error, 5xx or 429',
      labelNames: ['source'],
      registers,
    });
    this.signatureFailures = new Counter({
      name: 'maas_mirror_signature_failures_total',
      help: 'Upstream metadata rejected for a bad, missing or unknown-key signature',
      labelNames: ['source'],
      registers,
    });
    this.checksumFailures = new Counter({
      name: 'maas_mirror_checksum_failures_total',
      help: 'Downloads discarded for a size or sha256 mismatch',
      labelNames: ['source'],
      registers,
    });
    const totals = options.storeTotals;
    this.storeBytes = new Gauge({
      name: 'maas_mirror_store_bytes',
      help: 'Bytes in the blob store (measured after each sync and gc)',
      registers,
      collect() {
        const t = totals?.totals;
        if (t) this.set(t.bytes);
        else this.remove({});
      },
    });
    this.storeBlobs = new Gauge({
      name: 'maas_mirror_store_blobs',
      help: 'Files in the blob store (measured after each sync and gc)',
      registers,
      collect() {
        const t = totals?.totals;
        if (t) this.set(t.blobs);
        else this.remove({});
      },
    });
    this.gcReclaimedBytes = new Counter({
      name: 'maas_mirror_gc_reclaimed_bytes_total',
      help: 'Bytes freed by garbage collection (blobs and stale partial files)',
      registers,
    });
    const catalog = options.catalog;
    const now = this.now;
    this.snapshotAge = new Gauge({
      name: 'maas_mirror_snapshot_age_seconds',
      help: 'Seconds since the current snapshot was published; absent before the first publish',
      registers,
      async collect() {
        const cur = await catalog?.current().catch(() => undefined);
        if (cur) this.set(Math.max(0, (now() - Date.parse(cur.created)) / 1000));
        else this.remove({});
      },
    });
    this.httpDuration = new Histogram({
      name: 'maas_mirror_http_request_duration_seconds',
      help: 'HTTP requests by route, method and status: time until the response was over',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120, 600],
      registers,
    });
    this.httpSentBytes = new Counter({
      name: 'maas_mirror_http_sent_bytes_total',
      help: 'HTTP response body bytes handed to the network, by route',
      labelNames: ['route'],
      registers,
    });
    this.tftpTransfers = new Counter({
      name: 'maas_mirror_tftp_transfers_total',
      help: 'Finished TFTP transfers by result',
      labelNames: ['result'],
      registers,
    });
    this.tftpSentBytes = new Counter({
      name: 'maas_mirror_tftp_sent_bytes_total',
      help: 'File bytes TFTP clients acknowledged',
      registers,
    });
    const tftpSources = this.tftpSources;
    this.tftpActive = new Gauge({
      name: 'maas_mirror_tftp_active_transfers',
      help: 'TFTP transfers in progress',
      registers,
      collect() {
        let n = 0;
        for (const s of tftpSources) n += Number(s.activeTransfers) || 0;
        this.set(n);
      },
    });
    this.buildInfo = new Gauge({
      name: 'maas_mirror_build_info',
      help: 'Always 1; the version label says which maas-mirror runs',
      labelNames: ['version'],
      registers,
    });
    this.buildInfo.set({ version: options.version ?? packageVersion() }, 1);
    for (const r of TFTP_RESULTS) this.tftpTransfers.inc({ result: r }, 0);
  }

  /**
   * Creates the per-source series at 0, so rate() and increase() see the
   * first failure. Call with the configured names at start and after SIGHUP.
   */
  initSources(names: readonly string[]): void {
    for (const source of names) {
      for (const result of SYNC_RESULTS) this.syncRuns.inc({ source, result }, 0);
      for (const c of [this.downloadedBytes, this.retries, this.signatureFailures, this.checksumFailures]) c.inc({ source }, 0);
    }
  }

  /** Counts one finished source run; what runSync's onSourceDone and the daemon's own outcomes go through. */
  recordSourceRun(source: string, result: SyncRunResult, durationMs?: number): void {
    this.syncRuns.inc({ source, result });
    if (durationMs !== undefined) this.syncDuration.observe({ source }, durationMs / 1000);
    if (result === 'ok') this.lastSuccessfulSync.set({ source }, Math.floor(this.now() / 1000));
  }

  /** Re-measures the store (after a sync or gc); resolves when done. */
  async refreshStore(): Promise<void> {
    await this.storeTotals?.refresh();
  }

  /** Counts into tftp_active_transfers; returns the function that stops it. */
  addTftpSource(source: ActiveTransfers): () => void {
    this.tftpSources.add(source);
    return () => this.tftpSources.delete(source);
  }

  /**
   * The exposition text and its content type, for GET /metrics. `others`:
   * the HTTP workers' counts (httpJson()), summed with this process's.
   */
  async exposition(others?: readonly MetricJson[]): Promise<{ contentType: string; body: string }> {
    if (!others?.length) return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    // This process's own metrics as they are (prom-client's aggregation would drop or average some
    // process metrics), then the HTTP metrics summed per series over the workers.
    const own: string[] = [];
    for (const m of this.registry.getMetricsAsArray()) {
      if (!HTTP_METRIC_NAMES.has(m.name)) own.push(await this.registry.getSingleMetricAsString(m.name));
    }
    const summed = AggregatorRegistry.aggregate([...others]);
    return { contentType: this.registry.contentType, body: `${own.join('\n\n')}\n\n${await summed.metrics()}` };
  }

  /** The HTTP request metrics alone, in the form exposition() sums: what an HTTP worker reports. */
  async httpJson(): Promise<MetricJson> {
    const all = (await this.registry.getMetricsAsJSON()) as MetricJson;
    return all.filter((m) => HTTP_METRIC_NAMES.has(m.name));
  }
}

/** One registry's metrics as prom-client's getMetricsAsJSON() gives them (plain data: it crosses processes). */
export type MetricJson = MetricObjectWithValues<MetricValue<string>>[];

const HTTP_METRIC_NAMES: ReadonlySet<string> = new Set(['maas_mirror_http_request_duration_seconds', 'maas_mirror_http_sent_bytes_total']);

export function createMetrics(options: MetricsOptions = {}): MirrorMetrics {
  return new MirrorMetrics(options);
}

/** runSync's hooks, counting into the metrics. */
export function syncHooks(metrics: MirrorMetrics): SyncHooks {
  return {
    onDownloadedBytes: (source, bytes) => metrics.downloadedBytes.inc({ source }, bytes),
    onRetry: (source) => metrics.retries.inc({ source }),
    onSignatureFailure: (source) => metrics.signatureFailures.inc({ source }),
    onChecksumFailure: (source) => metrics.checksumFailures.inc({ source }),
    onSourceDone: (source, result, durationMs) => metrics.recordSourceRun(source, result, durationMs),
    onGc: (report) => {
      if (!report.dryRun) metrics.gcReclaimedBytes.inc(report.bytesFreed + report.partialBytesFreed);
    },
  };
}

/** What observeTftp needs of the TFTP server: its events, and optionally its live count. */
export interface TftpEventsLike {
  on(event: 'transferEnd', listener: (e: { result: string; bytes: number }) => void): unknown;
  off(event: 'transferEnd', listener: (e: { result: string; bytes: number }) => void): unknown;
  readonly activeTransfers?: number;
}

const TFTP_RESULT_SET: ReadonlySet<string> = new Set(TFTP_RESULTS);

/** Counts the TFTP server's transfers; returns the function that stops it. */
export function observeTftp(metrics: MirrorMetrics, server: TftpEventsLike): () => void {
  const onEnd = (e: { result: string; bytes: number }) => {
    metrics.tftpTransfers.inc({ result: TFTP_RESULT_SET.has(e.result) ? e.result : 'other' });
    if (Number.isFinite(e.bytes) && e.bytes > 0) metrics.tftpSentBytes.inc(e.bytes);
  };
  server.on('transferEnd', onEnd);
  const stopActive = typeof server.activeTransfers === 'number' ? metrics.addTftpSource(server as ActiveTransfers) : () => false;
  return () => {
    server.off('transferEnd', onEnd);
    stopActive();
  };
}

let cachedVersion: string | undefined;
export function packageVersion(): string {
  if (cachedVersion === undefined) {
    try {
      cachedVersion = String((JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: unknown }).version ?? 'unknown');
    } catch {
      cachedVersion = 'unknown';
    }
  }
  return cachedVersion;
}
