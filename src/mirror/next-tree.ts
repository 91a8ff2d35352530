import { createHash } from 'node:crypto';
import type { IndexEntry, Item, Product, ProductsDocument } from '../simplestreams/types.js';
import type { ManifestBootloader, ManifestFile } from '../store/manifest.js';
import { batched, jsonPieces } from '../simplestreams/json-pieces.js';
import { compareVersionKeys } from '../simplestreams/versions.js';
import { leaveOutPathConflicts, type PathConflict } from './path-conflicts.js';
import type { SelectedVersion } from './select.js';

/** One products file as it will be published. */
export interface PublishContent {
  readonly contentId: string;
  readonly source: string;
  /** streams/v1/<content id>, without extension. */
  readonly basePath: string;
  /** Upstream's index entry fields, kept as they were (path, products, updated are rewritten). */
  readonly entry: Readonly<Omit<IndexEntry, 'path'>>;
  readonly doc: ProductsDocument;
}

export interface PublishModel {
  readonly contents: readonly PublishContent[];
  readonly files: ReadonlyMap<string, ManifestFile>;
  readonly bootloaders: readonly ManifestBootloader[];
  /** Identifies what would be published, whatever the date: equal fingerprints mean nothing to do. */
  readonly fingerprint: string;
}

export interface ContentBuild {
  readonly contentId: string;
  readonly source: string;
  readonly onDemand: boolean;
  readonly basePath: string;
  readonly entry: IndexEntry;
  /** Upstream's document (for product and version fields). */
  readonly upstream: ProductsDocument;
  /** Length of upstream's document text, when known (the disk space check's estimate). */
  readonly upstreamLength?: number;
  readonly selected: readonly SelectedVersion[];
  /** The same content as the current snapshot published it, if it did. */
  readonly previous?: ProductsDocument;
}

export interface ModelInput {
  readonly builds: readonly ContentBuild[];
  /** Contents of sources that could not be read this time: republished as they were. */
  readonly carried: readonly PublishContent[];
  readonly held: (sha256: string) => boolean;
  /** Products (productKey) whose new versions MAAS would reject: left out like incomplete ones. */
  readonly rejected?: ReadonlySet<string>;
}

/** Names one product of one content id (for ModelInput.rejected). */
export function productKey(contentId: string, productId: string): string {
  return `${contentId}\u0000${productId}`;
}

export interface ModelOutcome {
  readonly model: PublishModel;
  /** product id → versions that were selected but could not be published. */
  readonly incomplete: readonly { contentId: string; productId: string; version: string }[];
  /** Versions left out because an item's path clashes with the tree's metadata or another item. */
  readonly conflicts: readonly PathConflict[];
}

/**
 * Decides what the next snapshot lists: every selected version whose files
 * are all held (or on demand), and, for a product none of whose selected
 * versions is complete, the versions the previous snapshot had. The tree then
 * lists exactly what the mirror holds, and a failed download never takes an
 * image away from MAAS.
 */
export function buildModel(input: ModelInput): ModelOutcome {
  let { contents, incomplete } = assemble(input, new Set());
  let { contents: published, conflicts } = leaveOutPathConflicts(contents);
  if (conflicts.length > 0) {
    // Assembled again without those versions, so a product left with none falls back to its previous ones.
    ({ contents, incomplete } = assemble(input, new Set(conflicts.map((c) => versionKey(c.contentId, c.productId, c.version)))));
    const again = leaveOutPathConflicts(contents);
    published = again.contents;
    conflicts = [...conflicts, ...again.conflicts];
  }
  return summarise(published, input.held, incomplete, conflicts);
}

function versionKey(contentId: string, productId: string, version: string): string {
  return `${contentId}\u0000${productId}\u0000${version}`;
}

/** The contents before path checks; `excluded` (versionKey) versions are left out like incomplete ones, unreported. */
function assemble(input: ModelInput, excluded: ReadonlySet<string>): { contents: PublishContent[]; incomplete: ModelOutcome['incomplete'] } {
  const contents: PublishContent[] = [...input.carried];
  const incomplete: { contentId: string; productId: string; version: string }[] = [];

  for (const b of input.builds) {
    const { products: _p, ...top } = b.upstream;
    const doc: ProductsDocument = { ...top, products: {} };
    const byProduct = new Map<string, SelectedVersion[]>();
    for (const sv of b.selected) {
      const list = byProduct.get(sv.productId) ?? [];
      list.push(sv);
      byProduct.set(sv.productId, list);
    }
    for (const [productId, versions] of byProduct) {
      const upstreamProduct = b.upstream.products[productId]!;
      const { versions: _v, ...productFields } = upstreamProduct;
      const product: Product = { ...productFields, versions: {} };
      const rejected = input.rejected?.has(productKey(b.contentId, productId)) ?? false;
      for (const sv of rejected ? [] : versions) {
        if (excluded.has(versionKey(b.contentId, productId, sv.version))) continue;
        const complete = b.onDemand || sv.files.every((f) => input.held(f.sha256));
        if (!complete) {
          incomplete.push({ contentId: b.contentId, productId, version: sv.version });
          continue;
        }
        const { items: allItems, ...versionFields } = upstreamProduct.versions[sv.version]!;
        const items: Record<string, Item> = {};
        for (const name of sv.items) items[name] = allItems[name]!;
        product.versions[sv.version] = { ...versionFields, items };
      }
      if (Object.keys(product.versions).length === 0) {
        const prev = b.previous?.products[productId];
        if (prev) {
          const kept = keepHeldVersions(prev, input.held);
          if (kept) doc.products[productId] = kept;
        }
        continue;
      }
      doc.products[productId] = product;
    }
    if (Object.keys(doc.products).length > 0) {
      contents.push({ contentId: b.contentId, source: b.source, basePath: b.basePath, entry: b.entry, doc });
    }
  }
  contents.sort((a, b) => (a.contentId < b.contentId ? -1 : a.contentId > b.contentId ? 1 : 0));
  return { contents, incomplete };
}

function summarise(
  published: readonly PublishContent[],
  held: (sha256: string) => boolean,
  incomplete: ModelOutcome['incomplete'],
  conflicts: readonly PathConflict[],
): ModelOutcome {

  const files = new Map<string, ManifestFile>();
  const bootloaders: ManifestBootloader[] = [];
  for (const c of published) {
    for (const [productId, product] of Object.entries(c.doc.products)) {
      for (const version of Object.values(product.versions)) {
        for (const item of Object.values(version.items)) {
          if (!files.has(item.path)) {
            files.set(item.path, {
              sha256: item.sha256,
              size: item.size,
              source: c.source,
              held: held(item.sha256),
              ...(typeof item.ftype === 'string' ? { ftype: item.ftype } : {}),
            });
          }
        }
      }
      const bl = bootloaderOf(productId, product);
      if (bl) bootloaders.push(bl);
    }
  }
  // Hashed in pieces (the same text JSON.stringify would make): one string of every products file
  // and one of every file's record would be tens of MB at 10,000 products.
  const hash = createHash('sha256');
  const contents = published.map((c) => [c.contentId, c.source, c.basePath, entryFields(c.entry), withoutUpdated(c.doc)]);
  // The list, a content's fields, its document, the document's products.
  for (const piece of batched(jsonPieces(contents, { space: 0, depth: 4 }), HASH_PIECE_CHARS)) hash.update(piece);
  const sortedFiles = [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const piece of batched(jsonPieces(sortedFiles, { space: 0, depth: 1 }), HASH_PIECE_CHARS)) hash.update(piece);
  const fingerprint = hash.digest('hex');
  return { model: { contents: published, files, bootloaders, fingerprint }, incomplete, conflicts };
}

/** Characters of JSON hashed at a time by the fingerprint. */
const HASH_PIECE_CHARS = 64 * 1024;

function keepHeldVersions(prev: Product, held: (sha: string) => boolean): Product | undefined {
  const versions: Product['versions'] = {};
  for (const [name, v] of Object.entries(prev.versions)) {
    if (Object.values(v.items).every((i) => held(i.sha256))) versions[name] = v;
  }
  return Object.keys(versions).length > 0 ? { ...prev, versions } : undefined;
}

function bootloaderOf(productId: string, product: Product): ManifestBootloader | undefined {
  const type = product['bootloader-type'];
  if (typeof type !== 'string') return undefined;
  const newest = Object.keys(product.versions).sort(compareVersionKeys).at(-1);
  if (!newest) return undefined;
  const items: Record<string, string> = {};
  for (const [name, item] of Object.entries(product.versions[newest]!.items)) items[name] = item.path;
  return {
    productId,
    bootloaderType: type,
    arch: String(product.arch ?? ''),
    os: String(product.os ?? ''),
    version: newest,
    items,
  };
}

/** The entry fields we pass through; path, products and updated are rewritten at publish. */
function entryFields(e: object): unknown {
  const { updated: _u, path: _p, products: _pr, ...rest } = e as { updated?: unknown; path?: unknown; products?: unknown };
  return rest;
}

function withoutUpdated<T extends object>(o: T): unknown {
  const { updated: _u, ...rest } = o as T & { updated?: unknown };
  return rest;
}
