import { AbortedError } from '../../errors.js';
import { StateStore } from '../../store/state.js';
import type { PublishContent } from '../next-tree.js';
import type { Published } from '../published.js';
import { readSource, type Prefetched, type SourceMetadata } from '../source.js';
import type { SyncRun } from './context.js';
import type { SourceReport } from './report.js';

export interface SourcesRead {
  /** Sources read and verified. */
  readonly metas: SourceMetadata[];
  /** Contents of sources that could not be read: they go out again as the current snapshot has them. */
  readonly carried: PublishContent[];
  /** Sources that failed, as reported. */
  readonly failed: SourceReport[];
  /** When each source's work began (for its duration metric). */
  readonly startedAt: ReadonlyMap<string, number>;
}

/** Phase 1: fetch and verify every source's index and products files. A source that fails is carried. */
export async function readSources(run: SyncRun, previous: Published | undefined, prefetched?: Prefetched): Promise<SourcesRead> {
  const { config, opts, hooks } = run;
  const out: SourcesRead = { metas: [], carried: [], failed: [], startedAt: new Map() };
  for (const source of config.sources) {
    (out.startedAt as Map<string, number>).set(source.name, Date.now());
    const slog = run.log.child({ source: source.name });
    try {
      const meta = await readSource(source, {
        client: run.client,
        prefetched,
        state: new StateStore(run.layout, source.name, opts.dryRun),
        logger: slog,
        retries: config.download.retries,
        allowDowngrade: opts.allowDowngrade,
        signal: opts.signal,
        onRetry: () => hooks.onRetry?.(source.name),
        onSignatureFailure: () => hooks.onSignatureFailure?.(source.name),
      });
      out.metas.push(meta);
      slog.info({ requests: meta.requests, changed: meta.changedDocuments }, `read ${meta.contents.length} products files`);
    } catch (err) {
      if (err instanceof AbortedError) throw err;
      run.failures.report(slog, source.name, err, `source ${source.name} rejected`);
      out.failed.push({ name: source.name, result: 'failed', requests: 0, changedDocuments: 0 });
      hooks.onSourceDone?.(source.name, 'failed', Date.now() - out.startedAt.get(source.name)!);
      // Keep serving what this source had: its products go out again as they were.
      for (const c of previous?.contents.values() ?? []) if (c.source === source.name) out.carried.push(c);
    }
  }
  return out;
}
