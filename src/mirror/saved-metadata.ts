import type { Config, SourceConfig } from '../config/load.js';
import { parseIndex, parseProducts } from '../simplestreams/parse.js';
import { Layout } from '../store/layout.js';
import { StateStore, type DocumentState } from '../store/state.js';
import { filterWarnings, type SyncWarning } from './selection-warnings.js';
import type { SourceContent } from './source.js';
import { joinUrl } from './url.js';

export interface SavedCheck {
  readonly source: string;
  /** The index date of the metadata checked against; undefined when no sync has read this source yet. */
  readonly metadataOf: string | undefined;
  readonly warnings: readonly SyncWarning[];
}

/**
 * The configured filters checked against the metadata the last sync
 * verified and kept in state/<source>/docs/: no network, nothing written.
 * A source no sync has read yet (or read under another URL's documents) is
 * reported as unchecked.
 */
export async function checkSavedFilters(config: Config): Promise<SavedCheck[]> {
  const layout = new Layout(config.dataDir);
  const out: SavedCheck[] = [];
  for (const source of config.sources) out.push(await checkSource(layout, source).catch(() => ({ source: source.name, metadataOf: undefined, warnings: [] })));
  return out;
}

async function checkSource(layout: Layout, source: SourceConfig): Promise<SavedCheck> {
  const state = new StateStore(layout, source.name, true);
  const docs = (await state.load()).documents;
  const text = async (d: DocumentState | undefined) => {
    const sha = source.verify ? d?.verifiedSha256 : d?.textSha256;
    return sha ? state.readText(sha) : undefined;
  };
  const indexPath = `streams/v1/index${source.verify ? '.sjson' : '.json'}`;
  const indexText = await text(docs[indexPath]);
  const unchecked = { source: source.name, metadataOf: undefined, warnings: [] };
  if (indexText === undefined) return unchecked;
  const index = parseIndex(indexText, joinUrl(source.url, indexPath));
  const contents: SourceContent[] = [];
  for (const [contentId, entry] of Object.entries(index.index)) {
    if (entry.format !== 'products:1.0') continue;
    if (source.contentIds && !source.contentIds.some((re) => re.test(contentId))) continue;
    const docText = await text(docs[entry.path]);
    // Selected now but not by the sync that saved these: the saved metadata cannot answer for it.
    if (docText === undefined) return unchecked;
    contents.push({ contentId, entry, basePath: entry.path.replace(/\.s?json$/, ''), doc: parseProducts(docText, joinUrl(source.url, entry.path)) });
  }
  return { source: source.name, metadataOf: index.updated ?? 'an undated index', warnings: filterWarnings(source, index, contents) };
}
