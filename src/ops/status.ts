import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Config } from '../config/load.js';
import { REPORT_CODES, type DowngradeError } from '../errors.js';
import type { ProgressSnapshot } from '../mirror/progress.js';
import type { SyncFailure } from '../mirror/sync.js';
import type { SyncWarning } from '../mirror/selection-warnings.js';
import { LOCAL_SOURCE } from '../mirror/local-images.js';
import { Layout } from '../store/layout.js';
import { readLockHolder } from '../store/lock.js';
import type { SnapshotInfo } from '../store/snapshots.js';
import type { ProductSummary, SnapshotCatalog } from './catalog.js';
import type { SyncCoordinator, SyncRecord } from './coordinator.js';
import type { StoreTotals, StoreTotalsCache } from './store-totals.js';

export interface SourceStatus {
  readonly name: string;
  /** Without any user:password part. */
  readonly url: string;
  /** Signatures are checked (sources[].verify): configuration, not a result. */
  readonly verify: boolean;
  /** What the newest sync that read this source found: the page's badge shows this, never the configuration. */
  readonly check: SourceCheck;
  readonly onDemand: boolean;
  readonly filters: readonly (readonly string[])[];
  readonly contentIds: readonly string[] | null;
  readonly maxVersions: number;
  /** What the current snapshot holds from this source. */
  readonly products: readonly ProductSummary[];
  /** Sum of the newest version of each product. */
  readonly bytes: number;
}

/**
 * verified: the last sync read this source and its signatures held; invalid:
 * a signature was refused; unreachable: the last sync could not read the
 * source (DNS, HTTP, …), so nothing was checked; downgrade: it was read and
 * its signature held, but it was dated older than what was already accepted
 * (a replay) and refused; unchecked: no sync has read it yet; off: verify is false.
 */
export interface SourceCheck {
  readonly state: 'verified' | 'invalid' | 'unreachable' | 'downgrade' | 'unchecked' | 'off';
  readonly sync: string | null;
  readonly at: string | null;
  /** The failure that made it invalid or unreachable. */
  readonly code: string | null;
}

export interface ProgressStatus extends Omit<ProgressSnapshot, 'startedAt'> {
  readonly startedAt: string;
  /** 0..1 of the bytes to fetch, or null before the plan is known. */
  readonly fraction: number | null;
  /** Seconds left at the current rate, while downloading with a known total. */
  readonly etaSeconds: number | null;
}

export interface RunningStatus {
  readonly id: string;
  readonly reason: string;
  readonly startedAt: string;
  readonly progress: ProgressStatus;
}

export interface DiskStatus {
  readonly total: number;
  readonly available: number;
  readonly used: number;
}

/** GET /status.json: what the public status page shows. No secrets, no local paths. */
export interface PublicStatus {
  readonly version: string;
  readonly time: string;
  readonly current: string | null;
  readonly sources: readonly SourceStatus[];
  readonly running: RunningStatus | null;
  readonly lastSync: SyncRecord | null;
  readonly nextSync: string | null;
  readonly store: StoreTotals | null;
  readonly disk: DiskStatus | null;
  readonly snapshots: readonly SnapshotInfo[];
  /** The warnings of the newest sync that ran (a skipped one has none of its own). */
  readonly warnings: readonly SyncWarning[];
  /** Site-built images (maas-mirror images) the current snapshot publishes. */
  readonly localImages?: readonly ProductSummary[];
  /** Processes serving HTTP (http.workers): configured, and running now. */
  readonly httpWorkers?: { readonly configured: number; readonly running: number };
}

/** GET /api/v1/status (token required): the public status plus history, paths and the lock holder. */
export interface MirrorStatus extends PublicStatus {
  readonly history: readonly SyncRecord[];
  readonly configFile: string;
  readonly dataDir: string;
  /** Another process holding the dataDir lock (e.g. cron's sync), when the daemon is not syncing. */
  readonly lock: { readonly pid: number; readonly host: string; readonly command: string; readonly since: string } | null;
}

export interface StatusDeps {
  readonly config: () => Config;
  readonly coordinator: SyncCoordinator;
  readonly catalog: SnapshotCatalog;
  readonly storeTotals?: StoreTotalsCache;
  readonly scheduler?: { readonly nextRunAt: Date | undefined };
  readonly version: string;
  /** With http.workers above 1; one process serves otherwise. */
  readonly httpWorkers?: () => { readonly configured: number; readonly running: number };
}

/** Reads the status from caches and a few cheap syscalls: cheap enough for a 2 s poll. */
export async function publicStatus(deps: StatusDeps): Promise<PublicStatus> {
  const config = deps.config();
  await deps.coordinator.restoreHistory();
  const [snapshots, products, disk] = await Promise.all([
    deps.catalog.snapshots().catch(() => []),
    deps.catalog.products().catch(() => []),
    diskStatus(config.dataDir),
  ]);
  const running = deps.coordinator.running;
  const last = deps.coordinator.lastSync;
  return {
    version: deps.version,
    time: new Date().toISOString(),
    current: snapshots.find((s) => s.current)?.id ?? null,
    sources: config.sources.map((s) => {
      const mine = products.filter((p) => p.source === s.name);
      return {
        name: s.name,
        url: stripCredentials(s.url),
        verify: s.verify,
        check: sourceCheck(s.name, s.verify, deps.coordinator.history),
        onDemand: s.onDemand,
        filters: s.filterText,
        contentIds: s.contentIds?.map((r) => r.source) ?? null,
        maxVersions: s.maxVersions,
        products: mine,
        bytes: mine.reduce((n, p) => n + (p.versions[0]?.bytes ?? 0), 0),
      };
    }),
    running: running
      ? { id: running.id, reason: running.reason, startedAt: running.startedAt, progress: progressStatus(running.progress.snapshot()) }
      : null,
    lastSync: last ? redactRecord(last) : null,
    nextSync: deps.scheduler?.nextRunAt?.toISOString() ?? null,
    store: deps.storeTotals?.totals ?? null,
    disk,
    snapshots,
    warnings: deps.coordinator.history.find((r) => r.result !== 'locked' && r.result !== 'aborted')?.warnings ?? [],
    localImages: products.filter((p) => p.source === LOCAL_SOURCE),
    httpWorkers: deps.httpWorkers?.() ?? { configured: 1, running: 1 },
  };
}

export async function fullStatus(deps: StatusDeps): Promise<MirrorStatus> {
  const config = deps.config();
  const [pub, holder] = await Promise.all([
    publicStatus(deps),
    deps.coordinator.running ? undefined : readLockHolder(new Layout(config.dataDir).lockFile).catch(() => undefined),
  ]);
  return {
    ...pub,
    history: deps.coordinator.history.map(redactRecord),
    configFile: config.file,
    dataDir: config.dataDir,
    lock: holder ? { pid: holder.pid, host: holder.host, command: holder.command, since: holder.since } : null,
  };
}

function progressStatus(p: ProgressSnapshot): ProgressStatus {
  return {
    phase: p.phase,
    filesTotal: p.filesTotal,
    filesDone: p.filesDone,
    bytesTotal: p.bytesTotal,
    bytesDone: p.bytesDone,
    rate: Math.round(p.rate),
    // Bounded: concurrency is at most 64, but a status line should stay short anyway.
    current: p.current.slice(0, 16),
    startedAt: new Date(p.startedAt).toISOString(),
    fraction: p.bytesTotal > 0 ? Math.min(1, p.bytesDone / p.bytesTotal) : p.phase === 'download' || p.phase === 'metadata' ? null : 1,
    etaSeconds: p.phase === 'download' && p.rate > 0 && p.bytesTotal > p.bytesDone ? Math.ceil((p.bytesTotal - p.bytesDone) / p.rate) : null,
  };
}

const SIGNATURE_CODES = new Set<string>([REPORT_CODES.signatureInvalid]);
/** A replayed older file: read and signed, refused for its date (src/mirror/source.ts). */
const DOWNGRADE_CODE: DowngradeError['code'] = REPORT_CODES.downgradeRefused;

/** The newest record that says anything about this source decides; older ones are history. */
export function sourceCheck(name: string, verify: boolean, history: readonly SyncRecord[]): SourceCheck {
  if (!verify) return { state: 'off', sync: null, at: null, code: null };
  for (const r of history) {
    const mine = r.sources.find((s) => s.name === name);
    if (!mine) continue;
    const base = { sync: r.id, at: r.finishedAt };
    if (mine.result !== 'failed') return { ...base, state: 'verified', code: null };
    const failure = r.failures.find((f) => f.source === name);
    const code = failure?.code ?? null;
    return { ...base, state: code === null ? 'unreachable' : SIGNATURE_CODES.has(code) ? 'invalid' : code === DOWNGRADE_CODE ? 'downgrade' : 'unreachable', code };
  }
  return { state: 'unchecked', sync: null, at: null, code: null };
}

async function diskStatus(dataDir: string): Promise<DiskStatus | null> {
  // Before the first sync dataDir may not exist yet: its parent is the same file system, usually.
  for (const dir of [dataDir, dirname(dataDir)]) {
    try {
      const s = await statfs(dir);
      const total = s.blocks * s.bsize;
      return { total, available: s.bavail * s.bsize, used: total - s.bfree * s.bsize };
    } catch {
      // try the next
    }
  }
  return null;
}

/** An upstream URL as it may be shown: without user:password. */
export function stripCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^/@\s]*@/, '//');
  }
}

function redactText(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1');
}

function redactRecord(r: SyncRecord): SyncRecord {
  const failure = (f: SyncFailure): SyncFailure => ({
    ...f,
    message: redactText(f.message),
    ...(f.url !== undefined ? { url: redactText(f.url) } : {}),
  });
  return {
    ...r,
    failures: r.failures.map(failure),
    error: r.error ? { code: r.error.code, message: redactText(r.error.message) } : null,
  };
}
