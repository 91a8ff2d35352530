import type { Logger } from 'pino';
import PQueue from 'p-queue';
import type { SourceConfig } from '../config/load.js';
import { DowngradeError, MetadataError } from '../errors.js';
import { fingerprints, loadKeyring } from '../pgp/keyring.js';
import { verifyClearsigned } from '../pgp/verify.js';
import { parseRfc2822 } from '../simplestreams/dates.js';
import { parseIndex, parseProducts } from '../simplestreams/parse.js';
import { assertSafeItemPath } from '../simplestreams/paths.js';
import type { IndexDocument, IndexEntry, ProductsDocument } from '../simplestreams/types.js';
import type { DocumentState, SourceState, StateStore } from '../store/state.js';
import type { UpstreamClient } from './client.js';
import { isFolderSource, readFolderDocument } from './folder.js';
import { fetchDocument, type FetchDocumentOptions, type FetchedDocument } from './metadata.js';
import { joinUrl } from './url.js';

/** Products files fetched (and verified) at once. */
const DOCUMENTS_AT_ONCE = 4;

export interface SourceContent {
  readonly contentId: string;
  readonly entry: IndexEntry;
  /** The entry path without its .json/.sjson extension, e.g. streams/v1/<content id>. */
  readonly basePath: string;
  readonly doc: ProductsDocument;
  /** Length of the document's text: what its published forms take, near enough, without serialising it again. */
  readonly textLength?: number;
}

export interface SourceMetadata {
  readonly source: SourceConfig;
  readonly index: IndexDocument;
  readonly contents: readonly SourceContent[];
  /** Documents whose bytes changed since the last accepted ones. */
  readonly changedDocuments: number;
  readonly requests: number;
  /** The state to save once the sync is done with it. */
  readonly state: SourceState;
}

/**
 * Documents already asked for this sync (by URL), with the validators they were asked for with,
 * and what came back: the document, or the error its request ended in (after its retries).
 */
export type Prefetched = ReadonlyMap<string, { readonly validators: DocumentState; readonly got?: FetchedDocument; readonly error?: unknown }>;

export interface ReadSourceOptions {
  client: UpstreamClient;
  /** Taken instead of a new request when the saved validators are the ones it was asked for with. */
  prefetched?: Prefetched;
  state: StateStore;
  logger: Logger;
  retries: number;
  allowDowngrade?: boolean;
  signal?: AbortSignal;
  onRetry?: () => void;
  onSignatureFailure?: () => void;
}

/**
 * Reads and checks one source's metadata: the index and every selected
 * products file, each fetched once, conditionally, and verified against the
 * source's keyring before a byte of it is believed.
 */
export async function readSource(source: SourceConfig, opts: ReadSourceOptions): Promise<SourceMetadata> {
  const previous = await opts.state.load();
  const next: SourceState = { documents: {} };
  const keyring = source.verify ? await loadKeyring(source.keyring!) : undefined;
  if (!source.verify) {
    opts.logger.warn(
      { source: source.name },
      `source ${source.name} is not verified (verify: false): anyone between here and ${source.url} can change what this mirror serves`,
    );
  }
  const keyringId = keyring ? fingerprints(keyring).sort().join(',') : undefined;
  const ext = source.verify ? '.sjson' : '.json';
  let requests = 0;
  let changed = 0;

  // A folder (an export disk) is read like a server: the same checks follow, only the transport differs.
  const fetchOne = (url: string, o: FetchDocumentOptions): Promise<FetchedDocument> =>
    isFolderSource(url) ? readFolderDocument(url, o) : fetchDocument(opts.client, url, o);

  const read = async (relPath: string): Promise<string> => {
    const url = joinUrl(source.url, relPath);
    const prev = previous.documents[relPath];
    requests++;
    const early = opts.prefetched?.get(url);
    let got: FetchedDocument;
    if (early && sameValidators(early.validators, prev)) {
      if (!early.got) throw early.error;
      got = early.got;
    } else {
      got = await fetchOne(url, { retries: opts.retries, previous: prev, signal: opts.signal, onRetry: opts.onRetry });
    }
    let raw: string | undefined;
    if (!got.changed) raw = prev?.textSha256 ? await opts.state.readText(prev.textSha256) : undefined;
    let fresh = got.changed;
    if (raw === undefined) {
      // A 304 without our stored copy (or a changed one): fetch it whole.
      const full = got.changed ? got : await fetchOne(url, { retries: opts.retries, signal: opts.signal });
      if (!full.changed) throw new MetadataError(url, 'the upstream answered 304 to an unconditional request');
      if (!got.changed) requests++;
      raw = full.text;
      fresh = true;
      next.documents[relPath] = { etag: full.etag, lastModified: full.lastModified };
    } else {
      next.documents[relPath] = { ...prev };
    }
    const doc = next.documents[relPath]!;
    if (fresh) changed++;
    doc.textSha256 = await opts.state.writeText(raw);
    if (!keyring) return raw;
    // Unchanged bytes, already verified by this very keyring: the verdict cannot differ.
    if (!fresh && prev?.verifiedSha256 && prev.verifiedBy === keyringId) {
      const text = await opts.state.readText(prev.verifiedSha256);
      if (text !== undefined) return text;
    }
    let text: string;
    try {
      text = (await verifyClearsigned(raw, keyring, url)).text;
    } catch (err) {
      opts.onSignatureFailure?.();
      throw err;
    }
    doc.verifiedSha256 = await opts.state.writeText(text);
    doc.verifiedBy = keyringId;
    return text;
  };

  const checkDate = (relPath: string, updated: string | undefined) => {
    const url = joinUrl(source.url, relPath);
    const accepted = previous.documents[relPath]?.updated;
    if (updated && accepted && !opts.allowDowngrade) {
      const a = parseRfc2822(accepted);
      const u = parseRfc2822(updated);
      if (a && u && u.getTime() < a.getTime()) throw new DowngradeError(url, updated, accepted);
    }
    next.documents[relPath]!.updated = updated ?? accepted;
  };

  const indexPath = `streams/v1/index${ext}`;
  const indexUrl = joinUrl(source.url, indexPath);
  const index = parseIndex(await read(indexPath), indexUrl);
  checkDate(indexPath, index.updated);

  const entries = Object.entries(index.index).filter(([contentId, entry]) => {
    // sstream-mirror never follows an entry without a format; nor do we.
    if (entry.format !== 'products:1.0') return false;
    if (source.contentIds && !source.contentIds.some((re) => re.test(contentId))) return false;
    assertSafeItemPath(entry.path, `${indexUrl} entry ${contentId}`);
    if (source.verify && !entry.path.endsWith('.sjson')) {
      throw new MetadataError(indexUrl, `signed index entry ${contentId} points to ${entry.path}, which is not a signed .sjson file`);
    }
    return true;
  });
  // Each document costs a round trip: on a long path, fetching them one after another is most of a no-op sync.
  const queue = new PQueue({ concurrency: DOCUMENTS_AT_ONCE });
  const texts = entries.map(([, entry]) => queue.add(() => read(entry.path)));
  // Failures are reported in index order, whichever document failed first.
  await Promise.allSettled(texts);
  const contents: SourceContent[] = [];
  for (const [i, [contentId, entry]] of entries.entries()) {
    const docText = await texts[i]!;
    const url = joinUrl(source.url, entry.path);
    const doc = parseProducts(docText, url);
    if (doc.content_id !== contentId) {
      throw new MetadataError(url, `content_id is ${doc.content_id}, but the index lists it as ${contentId}`);
    }
    checkDate(entry.path, doc.updated);
    contents.push({ contentId, entry, basePath: entry.path.replace(/\.s?json$/, ''), doc, textLength: docText.length });
  }
  return { source, index, contents, changedDocuments: changed, requests, state: next };
}

function sameValidators(a: DocumentState, b: DocumentState | undefined): boolean {
  return b !== undefined && a.etag === b.etag && a.lastModified === b.lastModified && a.textSha256 === b.textSha256;
}
