import { randomBytes } from 'node:crypto';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import { AbortedError, ArchiveRefusedError, isMirrorError, MaasRulesError } from '../errors.js';
import { loadOrCreateSigningKey } from '../pgp/keys.js';
import { BlobStore } from '../store/blobs.js';
import { archiveLimits } from '../store/archive-unpack.js';
import { unpackBootloaders } from '../store/bootloaders.js';
import { collectGarbage, readWanted, writeWanted, type GcReport } from '../store/gc.js';
import { Layout } from '../store/layout.js';
import { clearHold, readHold, writeHold, type Hold } from '../store/hold.js';
import type { SnapshotManifest } from '../store/manifest.js';
import { acquireLock, type Lock } from '../store/lock.js';
import { StateStore } from '../store/state.js';
import { UpstreamClient } from './client.js';
import { downloadBlob } from './download.js';
import { HashPool } from './hash-pool.js';
import { buildModel, type ContentBuild, type PublishContent, type PublishModel } from './model.js';
import { diffPlan, type PlanChange } from './plan.js';
import { readPublished } from './previous.js';
import { SyncProgress } from './progress.js';
import { maasProblems, publishSnapshot } from './publish.js';
import type { MaasProblem } from '../simplestreams/maas-rules.js';
import { RateLimiter } from './ratelimit.js';
import { selectContent, type WantedFile } from './select.js';
import { readSource, type SourceMetadata } from './source.js';

export interface SyncHooks {
  onDownloadedBytes?(source: string, bytes: number): void;
  onRetry?(source: string): void;
  onSignatureFailure?(source: string): void;
  onChecksumFailure?(source: string): void;
  onSourceDone?(source: string, result: 'ok' | 'partial' | 'failed', durationMs: number): void;
  onGc?(report: GcReport): void;
  onPublished?(snapshotId: string): void | Promise<void>;
}

export interface SyncOptions {
  config: Config;
  logger: Logger;
  dryRun?: boolean;
  allowDowngrade?: boolean;
  signal?: AbortSignal;
  progress?: SyncProgress;
  hooks?: SyncHooks;
  /** Skip taking the dataDir lock (the caller already holds it). */
  locked?: boolean;
  /** Backoff base for retries; tests shorten it. */
  retryBaseMs?: number;
  id?: string;
}

export interface SyncFailure {
  readonly source: string;
  readonly code: string;
  readonly message: string;
  readonly path?: string;
  readonly url?: string;
  /** The product a failure belongs to, when it is one product's (a refused bootloader archive). */
  readonly product?: string;
}

export interface SyncReport {
  readonly id: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly durationMs: number;
  readonly dryRun: boolean;
  /** ok: everything selected is published; partial: some of it failed; failed: nothing could be done. */
  readonly result: 'ok' | 'partial' | 'failed';
  readonly snapshot: string | undefined;
  readonly published: boolean;
  readonly sources: { name: string; result: 'ok' | 'partial' | 'failed'; requests: number; changedDocuments: number }[];
  readonly plan: { changes: PlanChange[]; filesToFetch: number; bytesToFetch: number };
  readonly downloaded: { files: number; bytes: number };
  readonly failures: SyncFailure[];
  readonly gc?: GcReport;
}

export function newSyncId(): string {
  return `sync-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(2).toString('hex')}`;
}

/**
 * One sync: read and verify every source, select, fetch what the store lacks,
 * publish what is complete, collect garbage. Never throws for a failed
 * source or item: those are in the report, and the rest still goes out.
 */
export async function runSync(opts: SyncOptions): Promise<SyncReport> {
  const started = Date.now();
  const id = opts.id ?? newSyncId();
  const { config } = opts;
  const log = opts.logger.child({ sync: id });
  const layout = new Layout(config.dataDir);
  const store = new BlobStore(layout);
  const progress = opts.progress ?? new SyncProgress();
  const hooks = opts.hooks ?? {};
  const failures: SyncFailure[] = [];
  let hashes: HashPool | undefined;
  const lock: Lock | undefined = opts.dryRun || opts.locked ? undefined : await acquireLock(layout.lockFile, `sync ${id}`);
  const client = new UpstreamClient({
    connectTimeout: config.download.connectTimeout,
    idleTimeout: config.download.idleTimeout,
    connections: config.download.concurrency + 2,
  });
  const finish = (partial: Omit<SyncReport, 'id' | 'startedAt' | 'finishedAt' | 'durationMs' | 'dryRun'>): SyncReport => ({
    id,
    startedAt: new Date(started).toISOString(),
    finishedAt: new Date().toISOString(),
    durationMs: Date.now() - started,
    dryRun: Boolean(opts.dryRun),
    ...partial,
  });
  try {
    progress.setPhase('metadata');
    const previous = await readPublished(layout);
    const sourceReports: SyncReport['sources'] = [];
    const metas: SourceMetadata[] = [];
    const carried: PublishContent[] = [];
    const sourceStart = new Map<string, number>();
    for (const source of config.sources) {
      sourceStart.set(source.name, Date.now());
      const slog = log.child({ source: source.name });
      try {
        const meta = await readSource(source, {
          client,
          state: new StateStore(layout, source.name, opts.dryRun),
          logger: slog,
          retries: config.download.retries,
          allowDowngrade: opts.allowDowngrade,
          signal: opts.signal,
          onRetry: () => hooks.onRetry?.(source.name),
          onSignatureFailure: () => hooks.onSignatureFailure?.(source.name),
        });
        metas.push(meta);
        slog.info({ requests: meta.requests, changed: meta.changedDocuments }, `read ${meta.contents.length} products files`);
      } catch (err) {
        if (err instanceof AbortedError) throw err;
        const f = failureOf(source.name, err);
        failures.push(f);
        slog.error({ code: f.code }, `source ${source.name} rejected: ${f.message}`);
        sourceReports.push({ name: source.name, result: 'failed', requests: 0, changedDocuments: 0 });
        hooks.onSourceDone?.(source.name, 'failed', Date.now() - sourceStart.get(source.name)!);
        // Keep serving what this source had: its products go out again as they were.
        for (const c of previous?.contents.values() ?? []) if (c.source === source.name) carried.push(c);
      }
    }

    // Select, and find out what the store lacks.
    const builds: ContentBuild[] = [];
    const wanted = new Map<string, WantedFile>();
    const pathOwner = new Map<string, WantedFile>();
    const contentOwner = new Map<string, string>();
    for (const meta of metas) {
      for (const content of meta.contents) {
        const owner = contentOwner.get(content.contentId);
        if (owner) {
          failures.push({
            source: meta.source.name,
            code: 'MM_CONTENT_CONFLICT',
            message: `content id ${content.contentId} comes from sources ${owner} and ${meta.source.name}; one published index cannot hold both. Narrow one source's contentIds`,
          });
          continue;
        }
        contentOwner.set(content.contentId, meta.source.name);
        const sel = selectContent(meta.source, content);
        for (const p of sel.problems) {
          failures.push({ source: meta.source.name, code: 'MM_METADATA_INVALID', message: p.message, path: p.path });
        }
        const versions = sel.versions.filter((v) =>
          v.files.every((f) => {
            const owner = pathOwner.get(f.path);
            if (owner && owner.sha256 !== f.sha256) {
              failures.push({
                source: meta.source.name,
                code: 'MM_PATH_CONFLICT',
                message: `${f.path} is published by source ${owner.source} with other content; ${v.productId} ${v.version} of ${meta.source.name} left out`,
                path: f.path,
              });
              return false;
            }
            return true;
          }),
        );
        for (const v of versions) {
          for (const f of v.files) {
            pathOwner.set(f.path, pathOwner.get(f.path) ?? f);
            if (!meta.source.onDemand && !wanted.has(f.sha256)) wanted.set(f.sha256, f);
          }
        }
        builds.push({
          contentId: content.contentId,
          source: meta.source.name,
          onDemand: meta.source.onDemand,
          basePath: content.basePath,
          entry: content.entry,
          upstream: content.doc,
          selected: versions,
          previous: previous?.contents.get(content.contentId)?.doc,
        });
      }
    }
    const held = new Set<string>();
    const missing: WantedFile[] = [];
    const candidates = new Map<string, number>();
    for (const f of wanted.values()) candidates.set(f.sha256, f.size);
    for (const c of previous?.contents.values() ?? []) {
      for (const p of Object.values(c.doc.products))
        for (const v of Object.values(p.versions)) for (const i of Object.values(v.items)) candidates.set(i.sha256, i.size);
    }
    for (const b of builds) if (b.onDemand) for (const v of b.selected) for (const f of v.files) candidates.set(f.sha256, f.size);
    for (const [sha, size] of candidates) if (await store.has(sha, size)) held.add(sha);
    for (const f of wanted.values()) if (!held.has(f.sha256)) missing.push(f);
    // A file the current snapshot lists as held but the store lost (verify quarantined it): once
    // fetched again, the tree needs republishing even though the metadata did not change.
    const repaired = previous ? Object.values(previous.manifest.files).some((f) => f.held && !held.has(f.sha256)) : false;
    const bytesToFetch = missing.reduce((n, f) => n + f.size, 0);

    if (opts.dryRun) {
      const preview = buildModel({ builds, carried, held: () => true }).model;
      const changes = diffPlan(previous?.contents, preview.contents);
      return finish({
        result: failures.length > 0 ? 'partial' : 'ok',
        snapshot: previous?.manifest.id,
        published: false,
        sources: [...sourceReports, ...metas.map((m) => ({ name: m.source.name, result: 'ok' as const, requests: m.requests, changedDocuments: m.changedDocuments }))],
        plan: { changes, filesToFetch: missing.length, bytesToFetch },
        downloaded: { files: 0, bytes: 0 },
        failures,
      });
    }
    for (const m of metas) await new StateStore(layout, m.source.name).save(m.state);
    // A source that could not be read keeps what it wanted last time, or gc would delete it meanwhile.
    const unread = metas.length < config.sources.length ? await readWanted(layout) : [];
    await writeWanted(layout, [...[...wanted.values()].map((f) => f.sha256), ...unread]);

    // Download.
    progress.setPhase('download');
    progress.plan(missing.length, bytesToFetch);
    const limiter = new RateLimiter(config.download.rateLimit);
    hashes = missing.length > 0 ? new HashPool() : undefined;
    const queue = new PQueue({ concurrency: config.download.concurrency });
    let downloadedFiles = 0;
    let downloadedBytes = 0;
    const failedSources = new Set<string>();
    // Largest first: the long transfers start early and the queue ends together.
    missing.sort((a, b) => b.size - a.size);
    for (const f of missing) {
      void queue.add(async () => {
        if (opts.signal?.aborted) return;
        progress.start(f.path);
        try {
          const r = await downloadBlob(f, {
            client,
            layout,
            store,
            hashes: hashes!,
            retries: config.download.retries,
            limiter,
            signal: opts.signal,
            retryBaseMs: opts.retryBaseMs,
            onBytes: (n) => {
              downloadedBytes += n;
              progress.bytes(n);
              hooks.onDownloadedBytes?.(f.source, n);
            },
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
          downloadedFiles++;
          progress.finish(f.path);
          log.debug({ path: f.path, bytes: f.size, resumedFrom: r.resumedFrom }, 'stored');
        } catch (err) {
          progress.drop(f.path);
          if (err instanceof AbortedError || opts.signal?.aborted) return;
          const fl = { ...failureOf(f.source, err), path: f.path, url: f.url };
          failures.push(fl);
          failedSources.add(f.source);
          log.error({ source: f.source, path: f.path, code: fl.code }, fl.message);
        }
      });
    }
    await queue.onIdle();
    if (opts.signal?.aborted) throw new AbortedError('the sync was aborted; partial files are kept and will be resumed');

    // Publish what is complete.
    progress.setPhase('publish');
    let { model, incomplete, conflicts } = buildModel({ builds, carried, held: (sha) => held.has(sha) });
    // MAAS fails a whole products file (and the import) for one bad product: leave such products out
    // (their previous versions stay), and publish nothing if the tree itself would be rejected.
    // A tree identical to the published one was checked when it was published: a no-op resync skips the walk.
    const unchanged = previous !== undefined && previous.manifest.fingerprint === model.fingerprint && !repaired;
    let problems = unchanged ? { byProduct: new Map<string, MaasProblem[]>(), tree: [] } : maasProblems(model);
    if (problems.byProduct.size > 0) {
      ({ model, incomplete, conflicts } = buildModel({ builds, carried, held: (sha) => held.has(sha), rejected: new Set(problems.byProduct.keys()) }));
      for (const [key, list] of problems.byProduct) {
        const [contentId, productId] = key.split('\u0000') as [string, string];
        const source = builds.find((b) => b.contentId === contentId)?.source ?? 'publish';
        const f = failureOf(source, new MaasRulesError(`product ${productId} (${contentId}) left out`, list));
        failures.push(f);
        failedSources.add(source);
        log.error({ source, productId, code: f.code }, f.message);
      }
      problems = maasProblems(model);
    }
    for (const c of conflicts) {
      const message = `${c.reason}; ${c.productId} ${c.version} (${c.contentId}) left out, the rest is published`;
      failures.push({ source: c.source, code: 'MM_PATH_CONFLICT', message, path: c.path, product: c.productId });
      failedSources.add(c.source);
      log.error({ source: c.source, productId: c.productId, version: c.version, path: c.path, code: 'MM_PATH_CONFLICT' }, message);
    }
    const treeProblems = [...problems.tree, ...[...problems.byProduct.values()].flat()];
    if (treeProblems.length > 0) {
      const f = failureOf('publish', new MaasRulesError('the tree', treeProblems));
      failures.push(f);
      log.error({ code: f.code }, `nothing published, the current snapshot stays: ${f.message}`);
    }
    const changes = diffPlan(previous?.contents, model.contents);
    let snapshot = previous?.manifest.id;
    let published = false;
    // Loaded before deciding: a tree signed by another key than the one MAAS is given must be re-signed.
    const key = await loadOrCreateSigningKey(layout.keysDir, config.publish.signingKey).catch((err: unknown) => {
      const f = failureOf('publish', err);
      failures.push(f);
      log.error({ code: f.code }, `the signing key cannot be loaded, the current snapshot stays: ${f.message}`);
      return undefined;
    });
    const rekeyed = previous !== undefined && key !== undefined && previous.manifest.signedBy !== key.fingerprint;
    const hold = await readHold(layout).catch((err: unknown) => {
      // Unreadable: the operator may have rolled back, so publishing could undo it. Publish nothing, say why.
      const f = failureOf('rollback hold', err);
      failures.push(f);
      log.error({ code: f.code }, `nothing published: ${f.message}`);
      return 'unreadable' as const;
    });
    const activeHold = hold !== undefined && hold !== 'unreadable' && previous?.manifest.id === hold.snapshot ? hold : undefined;
    // Only a sync that read every source can tell upstream moved on; carried contents are the held tree's own.
    const upstreamMoved = activeHold !== undefined && carried.length === 0 && model.fingerprint !== activeHold.newestFingerprint;
    // What to publish, if anything: upstream's tree, or (new key while held) the held tree again.
    let plan: { model: PublishModel; sources: SnapshotManifest['sources']; hold?: Hold } | undefined;
    if (key === undefined || treeProblems.length > 0 || hold === 'unreadable') {
      // Said above.
    } else if (activeHold && !upstreamMoved && rekeyed) {
      // The held tree, not upstream's newest, is what gets re-signed; the hold moves to the new snapshot.
      log.info({ heldSince: activeHold.since }, 'the signing key changed: the rolled-back tree is published again, signed with the new key');
      plan = {
        model: buildModel({ builds: [], carried: [...previous!.contents.values()], held: (sha) => held.has(sha) }).model,
        sources: previous!.manifest.sources,
        hold: activeHold,
      };
    } else if (activeHold && !upstreamMoved) {
      log.warn(
        { snapshot, rolledBackAt: activeHold.since },
        `current stays at ${activeHold.snapshot}, where "rollback" put it: upstream offers nothing newer than the snapshot rolled away from ` +
          `(to go forward now: maas-mirror rollback ${activeHold.newest})`,
      );
    } else if (model.contents.length === 0 && !previous) {
      log.warn('nothing to publish: no source gave a complete product');
    } else if (previous && previous.manifest.fingerprint === model.fingerprint && !repaired && !rekeyed) {
      log.info({ snapshot }, 'nothing changed upstream: the current snapshot stays');
    } else {
      if (rekeyed) log.info({ from: previous.manifest.signedBy, to: key.fingerprint }, 'the signing key changed: publishing the tree signed with the new key');
      plan = { model, sources: Object.fromEntries(config.sources.map((s) => [s.name, { url: s.url, onDemand: s.onDemand }])) };
    }
    if (plan && key) {
      try {
        const manifest = await publishSnapshot(plan.model, { layout, store, key, logger: log, sources: plan.sources });
        snapshot = manifest.id;
        published = true;
        // A held tree keeps its hold on the new snapshot; otherwise upstream moved on and the hold
        // has served its purpose (one on a snapshot no longer current is stale).
        if (plan.hold) await writeHold(layout, { ...plan.hold, snapshot: manifest.id });
        else if (hold !== undefined) await clearHold(layout);
        try {
          // Part of publishing, whoever publishes (the daemon or cron's CLI): TFTP and HTTP serve these by bare name.
          await unpackBootloaders(layout, manifest, log, { limits: archiveLimits(config.bootloaders), signal: opts.signal });
        } catch (err) {
          const f = { ...failureOf('bootloaders', err), ...refusedArchiveOf(err) };
          failures.push(f);
          log.error({ code: f.code, product: f.product, archive: f.path }, `bootloaders not unpacked, the previous ones stay: ${f.message}`);
        }
        await hooks.onPublished?.(manifest.id);
      } catch (err) {
        // Nothing reachable changed (current still points at the old tree); say why and keep the downloads.
        const f = failureOf('publish', err);
        failures.push(f);
        log.error({ code: f.code }, `publishing failed, the current snapshot stays: ${f.message}`);
      }
    }
    for (const i of incomplete) log.warn(i, 'version not published: some of its files are missing');

    progress.setPhase('gc');
    // What was published stays published: a gc that fails is reported, not thrown.
    const gc = await collectGarbage({
      layout,
      store,
      keepSnapshots: config.publish.keepSnapshots,
      partialProtectionMs: config.download.partialProtection,
      onlyIfPruned: !published,
    }).catch((err: unknown) => {
      const f = failureOf('gc', err);
      failures.push(f);
      log.error({ code: f.code }, `garbage collection failed, nothing was deleted after that point: ${f.message}`);
      return undefined;
    });
    if (gc) hooks.onGc?.(gc);
    progress.setPhase('done');

    for (const m of metas) {
      const r = failedSources.has(m.source.name) || failures.some((f) => f.source === m.source.name) ? 'partial' : 'ok';
      sourceReports.push({ name: m.source.name, result: r, requests: m.requests, changedDocuments: m.changedDocuments });
      hooks.onSourceDone?.(m.source.name, r, Date.now() - sourceStart.get(m.source.name)!);
    }
    const result = failures.length === 0 ? 'ok' : metas.length === 0 && !published ? 'failed' : 'partial';
    return finish({
      result,
      snapshot,
      published,
      sources: sourceReports,
      plan: { changes, filesToFetch: missing.length, bytesToFetch },
      downloaded: { files: downloadedFiles, bytes: downloadedBytes },
      failures,
      gc,
    });
  } finally {
    await hashes?.close();
    await client.close();
    await lock?.release();
  }
}

function failureOf(source: string, err: unknown): SyncFailure {
  if (isMirrorError(err)) return { source, code: err.code, message: err.message };
  return { source, code: 'MM_INTERNAL', message: errMessage(err) };
}

/** Which product and archive a refused bootloader archive was. */
function refusedArchiveOf(err: unknown): Pick<SyncFailure, 'product' | 'path'> {
  return err instanceof ArchiveRefusedError ? { product: err.productId, path: err.archive } : {};
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
