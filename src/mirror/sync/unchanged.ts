import { createHash } from 'node:crypto';
import { readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../../config/load.js';
import { AbortedError, errnoOf } from '../../errors.js';
import { GENERATED_KEY_FILE, PUBLIC_ARMORED_FILE, PUBLIC_BINARY_FILE } from '../../pgp/keys.js';
import { writeFileAtomic } from '../../store/fsutil.js';
import type { Layout } from '../../store/layout.js';
import { readManifest } from '../../store/manifest.js';
import { currentSnapshotId } from '../../store/snapshots.js';
import { StateStore, type DocumentState } from '../../store/state.js';
import { isFolderSource, readFolderDocument } from '../folder.js';
import { fetchDocument, type FetchedDocument } from '../metadata.js';
import type { SyncWarning } from '../selection-warnings.js';
import type { Prefetched } from '../source.js';
import { joinUrl } from '../url.js';
import type { SyncRun } from './context.js';

/**
 * What the current snapshot was made from, recorded by a sync that left it in step with every
 * input: the next sync sends the same conditional requests, and if every document is unchanged
 * (304) and nothing else it depends on moved, it has nothing to do and skips re-reading,
 * re-selecting and re-checking tens of thousands of items.
 */
interface UnchangedRecord {
  readonly version: 1;
  /** The snapshot current pointed at. */
  readonly snapshot: string;
  /** Digest of the config, the source keyrings and the signing key (see inputsDigest). */
  readonly inputs: string;
  /** source → document path → the validators and digests it was accepted with. */
  readonly documents: Readonly<Record<string, Readonly<Record<string, DocumentState>>>>;
  /** The filter warnings of that sync: the same inputs give the same warnings. */
  readonly warnings: readonly SyncWarning[];
}

export type Probe =
  | { readonly proven: true; readonly snapshot: string; readonly requests: ReadonlyMap<string, number>; readonly warnings: readonly SyncWarning[] }
  | { readonly proven: false; readonly why: string; readonly prefetched: Prefetched };

/**
 * Proves, or fails to prove, that a sync has nothing to do: the record matches the current
 * snapshot, no rollback hold is set, config and keys are byte for byte those it was made with,
 * the store still holds every file the snapshot lists, and every document answers 304 to the
 * request that accepted it. The documents it fetched are handed on, so a failed proof costs no
 * request twice.
 */
export async function probeUnchanged(run: SyncRun): Promise<Probe> {
  const prefetched = new Map<string, { validators: DocumentState; got?: FetchedDocument; error?: unknown }>();
  const no = (why: string): Probe => ({ proven: false, why, prefetched });
  const { layout, config } = run;
  const record = await readRecord(layout);
  if (!record) return no('no record of what current was made from');
  if ((await currentSnapshotId(layout)) !== record.snapshot) return no('current moved');
  if (await exists(layout.holdFile)) return no('a rollback hold is set');
  if (config.sources.some((s) => s.onDemand)) return no('an on-demand source changes what the store holds');
  if ((await inputsDigest(config, layout)) !== record.inputs) return no('the config or a key changed');
  const manifest = await readManifest(layout, record.snapshot).catch(() => undefined);
  if (!manifest) return no('the current snapshot has no readable manifest');
  const listed = new Map<string, undefined>();
  for (const f of Object.values(manifest.files)) if (f.held) listed.set(f.sha256, undefined);
  if ((await run.store.holding(listed)).size !== listed.size) return no('a file of the current snapshot left the store');
  for (const source of config.sources) {
    // The source's own state, as the full sync would read it: damaged, it is the full sync's to report.
    const saved = await new StateStore(layout, source.name, true).load().catch(() => undefined);
    if (!saved || !isDeepStrictEqual(saved.documents, record.documents[source.name])) return no(`the state of source ${source.name} changed`);
  }
  const requests = new Map<string, number>();
  for (const source of config.sources) {
    const documents = Object.entries(record.documents[source.name] ?? {});
    if (documents.length === 0) return no(`nothing recorded for source ${source.name}`);
    for (const [relPath, validators] of documents) {
      const url = joinUrl(source.url, relPath);
      // Asked for as the full sync asks (same retries): what comes back, even an error, is handed to it.
      const opts = { retries: config.download.retries, previous: validators, signal: run.opts.signal, onRetry: () => run.hooks.onRetry?.(source.name) };
      try {
        const got = await (isFolderSource(url) ? readFolderDocument(url, opts) : fetchDocument(run.client, url, opts));
        requests.set(source.name, (requests.get(source.name) ?? 0) + 1);
        prefetched.set(url, { validators, got });
        if (got.changed) return no(`${url} changed`);
      } catch (error) {
        if (error instanceof AbortedError) throw error;
        prefetched.set(url, { validators, error });
        return no(`${url} could not be read`);
      }
    }
  }
  return { proven: true, snapshot: record.snapshot, requests, warnings: record.warnings };
}

/** Recorded after a sync that left current in step with every input (see probeUnchanged). */
export async function recordUnchanged(
  layout: Layout,
  config: Config,
  snapshot: string,
  documents: Record<string, Record<string, DocumentState>>,
  warnings: readonly SyncWarning[],
): Promise<void> {
  const inputs = await inputsDigest(config, layout);
  if (!inputs) return;
  const record: UnchangedRecord = { version: 1, snapshot, inputs, documents, warnings };
  await writeFileAtomic(layout.unchangedFile, JSON.stringify(record) + '\n');
}

/** Dropped before a sync changes anything: only the sync that ends in step with its inputs records them again. */
export async function forgetUnchanged(layout: Layout): Promise<void> {
  await unlink(layout.unchangedFile).catch((err: unknown) => {
    if (errnoOf(err) !== 'ENOENT') throw err;
  });
}

async function readRecord(layout: Layout): Promise<UnchangedRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(layout.unchangedFile, 'utf8')) as Partial<UnchangedRecord> | null;
    const ok = r?.version === 1 && typeof r.snapshot === 'string' && typeof r.inputs === 'string' && typeof r.documents === 'object' && r.documents !== null && Array.isArray(r.warnings);
    return ok ? (r as UnchangedRecord) : undefined;
  } catch {
    // Missing or damaged: the full sync runs, which is always right.
    return undefined;
  }
}

/**
 * Everything besides the documents that decides what a sync publishes: the whole config (any
 * change at all means a full sync), each source keyring's bytes (a verdict may differ), and the
 * signing key's (the tree must be re-signed). Undefined when a key cannot be read: the full sync
 * then says why.
 */
async function inputsDigest(config: Config, layout: Layout): Promise<string | undefined> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(config, (_k, v: unknown) => (v instanceof RegExp ? `/${v.source}/${v.flags}` : v)));
  try {
    for (const s of config.sources) if (s.keyring) hash.update(`\0${s.name}\0`).update(await readFile(s.keyring));
    hash.update('\0signing key\0').update(await readFile(config.publish.signingKey ?? join(layout.keysDir, GENERATED_KEY_FILE)));
    // Written beside the key on every full sync; a no-op must not leave them missing.
    for (const f of [PUBLIC_BINARY_FILE, PUBLIC_ARMORED_FILE]) await stat(join(layout.keysDir, f));
  } catch {
    return undefined;
  }
  return hash.digest('hex');
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    (err: unknown) => {
      if (errnoOf(err) === 'ENOENT') return false;
      throw err;
    },
  );
}
