import type { Logger } from 'pino';
import type { Config, SourceConfig } from '../config/load.js';
import { flattenProducts } from '../simplestreams/flatten.js';
import { matchesGroups, type FilterGroups } from '../simplestreams/filter.js';
import { fieldCatalog } from '../simplestreams/unmatched.js';
import { compareVersionKeys } from '../simplestreams/versions.js';
import type { FlatItem } from '../simplestreams/types.js';
import { BlobStore } from '../store/blobs.js';
import { Layout } from '../store/layout.js';
import { StateStore } from '../store/state.js';
import { UpstreamClient } from './client.js';
import { localContentOf } from './local-images.js';
import { readPublished } from './published.js';
import { selectContent } from './select.js';
import { filterWarnings, type SyncWarning } from './selection-warnings.js';
import { readSource, type SourceMetadata } from './source.js';

/**
 * What an upstream offers, product by product, beside what the current
 * configuration selects from it and what the store already holds: the
 * operator's `sstream-query`. Reads and verifies exactly as a sync does
 * (signatures, replay dates) and writes nothing to dataDir.
 */

export interface OfferedVersion {
  readonly version: string;
  readonly items: number;
  readonly bytes: number;
  /** The source's filters and maxVersions keep this version. */
  readonly selected: boolean;
  /** Every file of it is in the store. */
  readonly held: boolean;
}

export interface OfferedProduct {
  readonly contentId: string;
  readonly id: string;
  readonly os?: string;
  readonly release?: string;
  readonly arch?: string;
  readonly subarch?: string;
  readonly kflavor?: string;
  readonly label?: string;
  /** Newest first. */
  readonly versions: readonly OfferedVersion[];
}

export interface SourceOffer {
  readonly name: string;
  readonly url: string;
  readonly products: readonly OfferedProduct[];
  /** Filter keys of the listed items and their values; `more` when there were more than unmatched.ts keeps. */
  readonly keys: Readonly<Record<string, { values: readonly string[]; more: boolean }>>;
  /** The configured filters and contentIds that match nothing here. */
  readonly warnings: readonly SyncWarning[];
}

const FIELDS = ['os', 'release', 'arch', 'subarch', 'kflavor', 'label'] as const;

export interface OfferOptions {
  readonly config: Config;
  readonly source: SourceConfig;
  /** Narrows the listing (ANDed), as sstream-query's arguments do; the selection marks still follow the config. */
  readonly filters: FilterGroups;
  readonly logger: Logger;
  readonly allowDowngrade?: boolean;
  readonly signal?: AbortSignal;
}

export async function readOffer(opts: OfferOptions): Promise<SourceOffer> {
  const { config, source } = opts;
  const layout = new Layout(config.dataDir);
  const client = new UpstreamClient({
    connectTimeout: config.download.connectTimeout,
    idleTimeout: config.download.idleTimeout,
    connections: 2,
    proxy: config.download.proxy,
  });
  let meta: SourceMetadata;
  try {
    meta = await readSource(source, {
      client,
      // Read-only: the accepted dates still refuse a replay, but nothing is remembered.
      state: new StateStore(layout, source.name, true),
      logger: opts.logger,
      retries: config.download.retries,
      allowDowngrade: opts.allowDowngrade,
      signal: opts.signal,
    });
  } finally {
    await client.close();
  }
  return summarize(meta, opts.filters, new BlobStore(layout));
}

async function summarize(meta: SourceMetadata, narrow: FilterGroups, store: BlobStore): Promise<SourceOffer> {
  const products: OfferedProduct[] = [];
  const shown: FlatItem[] = [];
  for (const content of meta.contents) {
    const selected = new Set(selectContent(meta.source, content).versions.map((v) => `${v.productId}\u0000${v.version}`));
    const items = flattenProducts(content.doc).filter((item) => matchesGroups(narrow, item.fields));
    for (const i of items) shown.push(i);
    products.push(...(await productsOf(content.contentId, items, store, (id, version) => selected.has(`${id}\u0000${version}`))));
  }
  products.sort((a, b) => (a.contentId + a.id < b.contentId + b.id ? -1 : 1));
  const catalog = fieldCatalog(shown);
  const keys: Record<string, { values: string[]; more: boolean }> = {};
  for (const k of [...catalog.values.keys()].sort()) {
    keys[k] = { values: [...catalog.values.get(k)!].sort(), more: catalog.overflow.has(k) };
  }
  return {
    name: meta.source.name,
    url: meta.source.url,
    products,
    keys,
    warnings: filterWarnings(meta.source, meta.index, meta.contents),
  };
}

/** Items grouped by product and version, newest version first, each marked selected and held. */
async function productsOf(
  contentId: string,
  items: readonly FlatItem[],
  store: BlobStore,
  selected: (productId: string, version: string) => boolean,
): Promise<OfferedProduct[]> {
  const byProduct = new Map<string, Map<string, FlatItem[]>>();
  for (const item of items) {
    const versions = byProduct.get(item.productId) ?? new Map<string, FlatItem[]>();
    byProduct.set(item.productId, versions);
    versions.set(item.versionName, [...(versions.get(item.versionName) ?? []), item]);
  }
  const products: OfferedProduct[] = [];
  for (const [id, versions] of byProduct) {
    const names = [...versions.keys()].sort(compareVersionKeys).reverse();
    const newest = versions.get(names[0]!)![0]!.fields;
    const fields: Record<string, string> = {};
    for (const f of FIELDS) if (newest[f] !== undefined) fields[f] = String(newest[f]);
    const out: OfferedVersion[] = [];
    for (const name of names) {
      const its = versions.get(name)!;
      let held = true;
      for (const i of its) if (!(await store.has(i.sha256, i.size))) held = false;
      out.push({ version: name, items: its.length, bytes: its.reduce((n, i) => n + i.size, 0), selected: selected(id, name), held });
    }
    products.push({ contentId, id, ...fields, versions: out });
  }
  return products;
}

/**
 * The site-built images the current snapshot publishes (`images add`): not
 * offered by any source, always selected while published, held unless
 * `verify` quarantined a file. Narrowed by the same filters.
 */
export async function readLocalOffer(config: Config, narrow: FilterGroups): Promise<OfferedProduct[]> {
  const layout = new Layout(config.dataDir);
  const local = localContentOf((await readPublished(layout))?.contents.values() ?? []);
  if (!local) return [];
  const items = flattenProducts(local.doc).filter((item) => matchesGroups(narrow, item.fields));
  const products = await productsOf(local.contentId, items, new BlobStore(layout), () => true);
  return products.sort((a, b) => (a.id < b.id ? -1 : 1));
}
