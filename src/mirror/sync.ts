import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import { loadOrCreateSigningKey } from '../pgp/keys.js';
import { MaasRulesError, NotEnoughSpaceError, REPORT_CODES } from '../errors.js';
import { BlobStore } from '../store/blobs.js';
import { collectGarbage, readWanted, writeWanted, type GcReport } from '../store/gc.js';
import { readHold } from '../store/hold.js';
import { Layout } from '../store/layout.js';
import { acquireLock } from '../store/lock.js';
import { StateStore } from '../store/state.js';
import { UpstreamClient } from './client.js';
import { buildModel, type ContentBuild, type PublishModel } from './next-tree.js';
import { localContentOf, localWithoutClashes, upstreamContentsOf, withLocalContent } from './local-images.js';
import { droppedWarnings, filterWarnings, type SyncWarning } from './selection-warnings.js';
import { checkSpace, type SpaceCheck } from './space.js';
import type { SourceContent, SourceMetadata } from './source.js';
import { flattenProducts } from '../simplestreams/flatten.js';
import type { FlatItem } from '../simplestreams/types.js';
import { diffVersions } from './version-diff.js';
import { readPublished, type Published } from './published.js';
import { SyncProgress } from './progress.js';
import { assembleTree, type Assembled } from './sync/assemble.js';
import { Failures, type SyncRun } from './sync/context.js';
import { decidePublish } from './sync/decide.js';
import { fetchMissing } from './sync/fetch.js';
import { publishDecision } from './sync/publish-step.js';
import { readSources, type SourcesRead } from './sync/read-sources.js';
import { errMessage, failureOf, type SourceReport, type SyncFailure, type SyncReport } from './sync/report.js';
import { selectAll, type SelectedAll } from './sync/select-all.js';
import { takeInventory } from './sync/inventory.js';
import { forgetUnchanged, probeUnchanged, recordUnchanged, type Probe } from './sync/unchanged.js';

export type { SyncFailure, SyncReport } from './sync/report.js';

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

export function newSyncId(): string {
  return `sync-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(2).toString('hex')}`;
}

/**
 * One sync: read and verify every source, select, fetch what the store lacks,
 * decide, publish what is complete, collect garbage. Never throws for a failed
 * source or item: those are in the report, and the rest still goes out.
 */
export async function runSync(opts: SyncOptions): Promise<SyncReport> {
  const started = Date.now();
  const id = opts.id ?? newSyncId();
  const { config } = opts;
  const layout = new Layout(config.dataDir);
  const lock = opts.dryRun || opts.locked ? undefined : await acquireLock(layout.lockFile, `sync ${id}`);
  const run: SyncRun = {
    opts,
    config,
    log: opts.logger.child({ sync: id }),
    layout,
    store: new BlobStore(layout),
    client: new UpstreamClient({
      connectTimeout: config.download.connectTimeout,
      idleTimeout: config.download.idleTimeout,
      // The files in flight, the extra parts of a striped one, and the metadata; further parts wait for a free connection.
      connections: config.download.concurrency + config.download.stripes + 2,
      proxy: config.download.proxy,
    }),
    progress: opts.progress ?? new SyncProgress(),
    hooks: opts.hooks ?? {},
    failures: new Failures(),
  };
  const stamp = { id, startedAt: new Date(started).toISOString(), dryRun: Boolean(opts.dryRun) };
  try {
    const body = await syncPhases(run);
    return { ...stamp, finishedAt: new Date().toISOString(), durationMs: Date.now() - started, ...body };
  } finally {
    await run.client.close();
    await lock?.release();
  }
}

type ReportBody = Omit<SyncReport, 'id' | 'startedAt' | 'finishedAt' | 'durationMs' | 'dryRun'>;

async function syncPhases(run: SyncRun): Promise<ReportBody> {
  const { layout, config, opts, progress, failures } = run;
  progress.setPhase('metadata');
  const began = Date.now();
  const probe = opts.dryRun ? undefined : await probeUnchanged(run);
  if (probe?.proven) return keepUnchanged(run, probe, began);
  if (probe) {
    run.log.debug({ why: probe.why }, 'a full sync: nothing proves the current snapshot is in step with upstream');
    await forgetUnchanged(layout);
  }
  const previous = await readPublished(layout);
  const read = await readSources(run, previous, probe?.prefetched);
  const { warnings, selection } = warnAndSelect(read.metas, previous, config.images.contentId, run.log);
  const filterWarnings = [...warnings];
  // Site-built images ride along as the current snapshot lists them (see local-images.ts).
  const previousLocal = localContentOf(previous?.contents.values() ?? []);
  failures.list.push(...selection.failures);
  const inventory = await takeInventory(run.store, selection.builds, selection.wanted, previous);
  const { held, missing, bytesToFetch } = inventory;
  const space = await checkSpace(layout, missing, metadataBytes(selection.builds));

  if (opts.dryRun) {
    const preview = withLocalContent(buildModel({ builds: selection.builds, carried: read.carried, held: () => true }).model, previousLocal, () => true);
    warnings.push(...warnDropped(previous, preview, read.metas, config, run.log));
    return {
      result: failures.list.length > 0 ? 'partial' : 'ok',
      snapshot: previous?.manifest.id,
      published: false,
      sources: [...read.failed, ...read.metas.map((m) => ({ name: m.source.name, result: 'ok' as const, requests: m.requests, changedDocuments: m.changedDocuments }))],
      plan: { changes: diffVersions(previous?.contents, preview.contents), filesToFetch: missing.length, bytesToFetch },
      downloaded: { files: 0, bytes: 0 },
      failures: failures.list,
      warnings,
      space,
    };
  }
  const noRoom = spaceFailure(space, config.dataDir);
  if (noRoom) {
    // Before anything is written: the current snapshot, the state and the partial files stay as they were.
    failures.add(noRoom);
    run.log.error({ code: noRoom.code, needed: space?.needed, available: space?.available }, noRoom.message);
    return {
      result: 'failed',
      snapshot: previous?.manifest.id,
      published: false,
      // These sources were read and verified: the refusal is the sync's (space), not theirs.
      sources: [...read.failed, ...read.metas.map((m) => ({ name: m.source.name, result: 'ok' as const, requests: m.requests, changedDocuments: m.changedDocuments }))],
      plan: { changes: [], filesToFetch: missing.length, bytesToFetch },
      downloaded: { files: 0, bytes: 0 },
      failures: failures.list,
      warnings,
      space,
    };
  }
  for (const m of read.metas) await new StateStore(layout, m.source.name).save(m.state);
  // A source that could not be read keeps what it wanted last time, or gc would delete it meanwhile.
  const unread = read.metas.length < config.sources.length ? await readWanted(layout) : [];
  await writeWanted(layout, [...[...selection.wanted.values()].map((f) => f.sha256), ...unread]);

  const downloaded = await fetchMissing(run, missing, held);

  progress.setPhase('publish');
  const clashes = new Set<string>();
  const withLocal = (m: PublishModel): PublishModel => {
    const { local, clashes: found } = localWithoutClashes(previousLocal, m.contents, (sha) => held.has(sha), config.images.contentId);
    for (const c of found) clashes.add(c);
    return withLocalContent(m, local, (sha) => held.has(sha));
  };
  const tree = assembleTree({
    extend: withLocal,
    builds: selection.builds,
    carried: read.carried,
    held: (sha) => held.has(sha),
    checkedFingerprint: inventory.repaired ? undefined : previous?.manifest.fingerprint,
    nothingToCheck: previous === undefined && read.failed.length > 0,
  });
  for (const message of clashes) {
    run.failures.add({ source: 'images', code: REPORT_CODES.imageClash, message });
    run.log.error({ code: REPORT_CODES.imageClash }, message);
  }
  reportRejections(run, tree, previous);
  const { snapshot, published } = await decideAndPublish(run, previous, tree, read, inventory.repaired, held, withLocal, (model) =>
    warnings.push(...warnDropped(previous, model, read.metas, config, run.log)),
  );
  for (const i of tree.incomplete) run.log.warn(i, 'version not published: some of its files are missing');

  const gc = await collect(run, published);
  if (snapshot && failures.list.length === 0 && tree.incomplete.length === 0 && read.carried.length === 0) {
    // In step with every input: the next sync can prove it has nothing to do (sync/unchanged.ts).
    const documents = Object.fromEntries(read.metas.map((m) => [m.source.name, m.state.documents]));
    await recordUnchanged(layout, config, snapshot, documents, filterWarnings).catch((err: unknown) =>
      run.log.warn({ err: errMessage(err) }, 'could not record what current was made from; the next sync reads everything again'),
    );
  }
  progress.setPhase('done');
  const sources = [...read.failed, ...sourceResults(run, read)];
  return {
    result: failures.list.length === 0 ? 'ok' : read.metas.length === 0 && !published ? 'failed' : 'partial',
    snapshot,
    published,
    sources,
    plan: { changes: diffVersions(previous?.contents, tree.model.contents), filesToFetch: missing.length, bytesToFetch },
    downloaded,
    failures: failures.list,
    warnings,
    space,
    gc,
  };
}

/** A sync with nothing to do, proven by probeUnchanged: the current snapshot stays, gc runs as after any sync. */
async function keepUnchanged(run: SyncRun, probe: Extract<Probe, { proven: true }>, began: number): Promise<ReportBody> {
  const { log, config, hooks } = run;
  log.info({ snapshot: probe.snapshot }, 'nothing changed upstream (every document answered 304; config, keys and store as before): the current snapshot stays');
  const warnings = [...probe.warnings];
  for (const w of warnings) log.warn({ source: w.source, code: w.code, term: w.term, suggestions: w.suggestions }, w.message);
  const space = await checkSpace(run.layout, [], () => 0);
  const sources = config.sources.map((s) => {
    hooks.onSourceDone?.(s.name, 'ok', Date.now() - began);
    return { name: s.name, result: 'ok' as const, requests: probe.requests.get(s.name) ?? 0, changedDocuments: 0 };
  });
  const gc = await collect(run, false);
  run.progress.setPhase('done');
  return {
    result: run.failures.list.length === 0 ? 'ok' : 'partial',
    snapshot: probe.snapshot,
    published: false,
    sources,
    plan: { changes: [], filesToFetch: 0, bytesToFetch: 0 },
    downloaded: { files: 0, bytes: 0 },
    failures: run.failures.list,
    warnings,
    space,
    gc,
  };
}

function reportRejections(run: SyncRun, tree: Assembled, previous: Published | undefined): void {
  for (const c of tree.conflicts) {
    const message = `${c.reason}; ${c.productId} ${c.version} (${c.contentId}) left out, the rest is published`;
    run.failures.add({ source: c.source, code: REPORT_CODES.pathConflict, message, path: c.path, product: c.productId });
    run.log.error({ source: c.source, productId: c.productId, version: c.version, path: c.path, code: REPORT_CODES.pathConflict }, message);
  }
  for (const r of tree.rejected) {
    const f = run.failures.add(failureOf(r.source, new MaasRulesError(`product ${r.productId} (${r.contentId}) left out`, r.problems)));
    run.log.error({ source: r.source, productId: r.productId, code: f.code }, f.message);
  }
  if (tree.treeProblems.length > 0) {
    run.failures.report(run.log, 'publish', new MaasRulesError('the tree', tree.treeProblems), `nothing published, ${stays(previous)}`);
  }
}

/** Phases 6 and 7: load the key and the hold, decide, publish. */
async function decideAndPublish(
  run: SyncRun,
  previous: Published | undefined,
  tree: Assembled,
  read: SourcesRead,
  repaired: boolean,
  held: ReadonlySet<string>,
  withLocal: (model: PublishModel) => PublishModel,
  beforePublishing: (model: PublishModel) => void,
): Promise<{ snapshot: string | undefined; published: boolean }> {
  const { layout, config, log, failures } = run;
  // Loaded before deciding: a tree signed by another key than the one MAAS is given must be re-signed.
  const key = await loadOrCreateSigningKey(layout.keysDir, config.publish.signingKey, undefined, config.publish.keyName).catch((err: unknown) => {
    failures.report(log, 'publish', err, `the signing key cannot be loaded, ${stays(previous)}`);
    return undefined;
  });
  const hold = await readHold(layout).catch((err: unknown) => {
    // Unreadable: the operator may have rolled back, so publishing could undo it. Publish nothing, say why.
    failures.report(log, 'rollback hold', err, 'nothing published');
    return 'unreadable' as const;
  });
  const decision = decidePublish({
    current: previous && {
      id: previous.manifest.id,
      fingerprint: previous.manifest.fingerprint,
      signedBy: previous.manifest.signedBy,
      sources: previous.manifest.sources,
      contents: upstreamContentsOf(previous.contents.values()),
    },
    extend: withLocal,
    model: tree.model,
    held: (sha) => held.has(sha),
    sources: Object.fromEntries(config.sources.map((s) => [s.name, { url: s.url, onDemand: s.onDemand }])),
    keyFingerprint: key?.fingerprint,
    hold,
    treeRejected: tree.treeProblems.length > 0,
    carried: read.carried.length > 0,
    repaired,
  });
  if (decision.note) log[decision.note.level](decision.note.fields ?? {}, decision.note.message);
  if (decision.action === 'keep' || !key) return { snapshot: previous?.manifest.id, published: false };
  // Said before publishing, for upstream's tree (a held tree re-signed drops nothing).
  if (decision.model === tree.model) beforePublishing(tree.model);
  const out = await publishDecision(run, decision, key, stays(previous));
  return out.published ? out : { snapshot: previous?.manifest.id, published: false };
}

/** Phase 8: what was published stays published: a gc that fails is reported, not thrown. */
async function collect(run: SyncRun, published: boolean): Promise<GcReport | undefined> {
  run.progress.setPhase('gc');
  const gc = await collectGarbage({
    layout: run.layout,
    store: run.store,
    keepSnapshots: run.config.publish.keepSnapshots,
    partialProtectionMs: run.config.download.partialProtection,
    onlyIfPruned: !published,
  }).catch((err: unknown) => {
    run.failures.report(run.log, 'gc', err, 'garbage collection failed, nothing was deleted after that point');
    return undefined;
  });
  if (gc) run.hooks.onGc?.(gc);
  return gc;
}

function sourceResults(run: SyncRun, read: SourcesRead): SourceReport[] {
  return read.metas.map((m) => {
    const name = m.source.name;
    const result = run.failures.touches(name) ? ('partial' as const) : ('ok' as const);
    run.hooks.onSourceDone?.(name, result, Date.now() - read.startedAt.get(name)!);
    return { name, result, requests: m.requests, changedDocuments: m.changedDocuments };
  });
}

/**
 * Phase 2: the unmatched filter terms and contentIds of every source read (each logged), and the
 * selection. Each products file is flattened once for both, and the flat items let go after.
 */
function warnAndSelect(metas: readonly SourceMetadata[], previous: Published | undefined, localContentId: string, log: Logger): { warnings: SyncWarning[]; selection: SelectedAll } {
  const flat = new Map<SourceContent, readonly FlatItem[]>();
  const flatOf = (c: SourceContent): readonly FlatItem[] => {
    let items = flat.get(c);
    if (!items) flat.set(c, (items = flattenProducts(c.doc)));
    return items;
  };
  const warnings = metas.flatMap((m) => filterWarnings(m.source, m.index, m.contents, flatOf));
  for (const w of warnings) log.warn({ source: w.source, code: w.code, term: w.term, suggestions: w.suggestions }, w.message);
  return { warnings, selection: selectAll(metas, previous, localContentId, flatOf) };
}

/** Products the tree about to be published no longer lists, said before it is published. */
function warnDropped(previous: Published | undefined, model: PublishModel, metas: readonly SourceMetadata[], config: Config, log: Logger): SyncWarning[] {
  const out = droppedWarnings(previous, model, metas, config);
  for (const w of out) log.warn({ source: w.source, code: w.code, products: w.products?.length }, w.message);
  return out;
}

/** An upper bound of the metadata a publish writes, only computed when there is something to fetch. */
function metadataBytes(builds: readonly ContentBuild[]): () => number {
  return () => builds.reduce((n, b) => n + (b.upstreamLength ?? JSON.stringify(b.upstream).length), 0);
}

function spaceFailure(space: SpaceCheck | undefined, dataDir: string): SyncFailure | undefined {
  if (!space || space.fits) return undefined;
  const resumed = space.resumable > 0 ? `, ${formatSize(space.resumable)} of it already in partial files` : '';
  const err = new NotEnoughSpaceError(dataDir, formatSize(space.needed), formatSize(space.available), `${formatSize(space.toFetch)} to fetch${resumed}, plus ${formatSize(space.margin)} kept free for metadata`);
  return failureOf('disk', err);
}

function formatSize(n: number): string {
  return n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`;
}

function stays(previous: Published | undefined): string {
  return previous ? 'the current snapshot stays' : 'there is still no snapshot';
}
