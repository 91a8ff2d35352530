import type { Config, SourceConfig } from '../config/load.js';
import { FilterUnmatchedWarning, ProductDroppedWarning } from '../errors.js';
import { flattenProducts } from '../simplestreams/flatten.js';
import { nearest, unmatchedFilters, type UnmatchedFilter } from '../simplestreams/unmatched.js';
import type { FlatItem, IndexDocument } from '../simplestreams/types.js';
import type { PublishModel } from './next-tree.js';
import type { Published } from './published.js';
import type { SourceContent } from './source.js';

/** Something an operator must hear about although nothing failed: a selection that drops images unasked. */
export interface SyncWarning {
  readonly source: string;
  readonly code: string;
  readonly message: string;
  /** MM_FILTER_UNMATCHED: the filter term (or group, or contentIds pattern) and what upstream offers nearest to it. */
  readonly term?: string;
  readonly suggestions?: readonly string[];
  /** MM_PRODUCT_DROPPED: the products that go. */
  readonly products?: readonly string[];
}

/** Values named in one message; the JSON report and `maas-mirror list` have them all. */
const SHOWN = 20;

/**
 * Every filter term and contentIds pattern of a source that matches nothing
 * its upstream offers, with the nearest values it does offer.
 */
export function filterWarnings(
  source: SourceConfig,
  index: IndexDocument,
  contents: readonly SourceContent[],
  flatOf: (content: SourceContent) => readonly FlatItem[] = (c) => flattenProducts(c.doc),
): SyncWarning[] {
  const out: SyncWarning[] = [];
  const ids = Object.entries(index.index)
    .filter(([, e]) => e.format === 'products:1.0')
    .map(([id]) => id)
    .sort();
  for (const re of source.contentIds ?? []) {
    if (ids.some((id) => re.test(id))) continue;
    const suggestions = nearest(re.source.replace(/[\\^$()|*+?[\]{}]/g, ''), ids);
    out.push(warning(source.name, `contentIds ${re.source}`, suggestions, `${didYouMean(suggestions)}content ids upstream offers: ${shown(ids)}`));
  }
  // No filter term, nothing to miss: the items need not be flattened.
  if (source.filters.length === 0) return out;
  const items = contents.flatMap((c) => flatOf(c));
  for (const u of unmatchedFilters(source.filters, items)) out.push(warning(source.name, u.term, u.suggestions, detail(u)));
  return out;
}

function detail(u: UnmatchedFilter): string {
  if (u.kind === 'key') return `no item has the key "${u.key}"; ${didYouMean(u.suggestions)}keys upstream offers: ${shown(u.offered)}`;
  if (u.kind === 'value') return `${didYouMean(u.suggestions)}values of ${u.key} upstream offers: ${shown(u.offered)}`;
  return 'each term matches some item, but no item matches them all together';
}

function warning(source: string, term: string, suggestions: readonly string[], text: string): SyncWarning {
  const w = new FilterUnmatchedWarning(source, term, text);
  return { source, code: w.code, message: w.message, term, suggestions };
}

const didYouMean = (s: readonly string[]) => (s.length > 0 ? `did you mean ${s.join(' or ')}? ` : '');
const shown = (list: readonly string[]) => (list.length > SHOWN ? `${list.slice(0, SHOWN).join(', ')} (and ${list.length - SHOWN} more)` : list.join(', ') || 'none');

export interface ReadSource {
  readonly source: SourceConfig;
  readonly index: IndexDocument;
  readonly contents: readonly SourceContent[];
}

/**
 * Products the current snapshot publishes that the next one would not:
 * a source that was read and no longer selects them (or no longer exists).
 * Products of sources that could not be read are carried, never dropped.
 */
export function droppedWarnings(previous: Published | undefined, model: PublishModel, read: readonly ReadSource[], config: Config): SyncWarning[] {
  if (!previous) return [];
  const next = new Map(model.contents.map((c) => [c.contentId, c.doc]));
  const groups = new Map<string, { source: string; reason: string; products: string[] }>();
  for (const prev of previous.contents.values()) {
    const configured = config.sources.some((s) => s.name === prev.source);
    const meta = read.find((m) => m.source.name === prev.source);
    if (configured && !meta) continue;
    for (const productId of Object.keys(prev.doc.products)) {
      if (next.get(prev.contentId)?.products[productId]) continue;
      const reason = !meta ? `source ${prev.source} is no longer configured` : dropReason(meta, prev.contentId, productId);
      const key = `${prev.source}\u0000${reason}`;
      const g = groups.get(key) ?? { source: prev.source, reason, products: [] };
      g.products.push(productId);
      groups.set(key, g);
    }
  }
  return [...groups.values()].map((g) => {
    const products = g.products.sort();
    const w = new ProductDroppedWarning(g.source, products, g.reason);
    return { source: g.source, code: w.code, message: w.message, products };
  });
}

function dropReason(meta: ReadSource, contentId: string, productId: string): string {
  const content = meta.contents.find((c) => c.contentId === contentId);
  if (content) return content.doc.products[productId] ? 'the filters no longer select it' : 'upstream no longer lists it';
  return meta.index.index[contentId] ? `contentIds no longer select ${contentId}` : `upstream no longer lists ${contentId}`;
}
