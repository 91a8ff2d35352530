import type { Product, ProductsDocument } from '../simplestreams/types.js';
import type { PublishContent } from './next-tree.js';

/**
 * One tree on disk cannot hold a file and a folder at the same path. An item
 * whose path is a metadata file, or a folder of one (`streams`,
 * `streams/v1`), or that is a file where another item needs a folder (or the
 * reverse), would stop the whole publish with EEXIST/ENOTDIR. Such a version
 * is left out here, before anything is written, and the rest goes out.
 */

export interface PathConflict {
  readonly source: string;
  readonly contentId: string;
  readonly productId: string;
  readonly version: string;
  readonly path: string;
  readonly reason: string;
}

/** Files every tree holds besides its products files (the keyrings are served beside the tree). */
const FIXED_METADATA = ['streams/v1/index.json', 'streams/v1/index.json.gpg', 'streams/v1/index.sjson', 'keyring.gpg', 'keyring.asc'];
const PRODUCTS_EXTENSIONS = ['.json', '.sjson', '.json.gpg'];

/** The metadata files a tree of these contents holds. */
export function metadataPaths(contents: readonly Pick<PublishContent, 'basePath'>[]): string[] {
  return [...FIXED_METADATA, ...contents.flatMap((c) => PRODUCTS_EXTENSIONS.map((ext) => `${c.basePath}${ext}`))];
}

/** Paths taken so far: files (with their sha256; metadata has none) and every folder above them. */
class TreePaths {
  private readonly files = new Map<string, string | undefined>();
  private readonly folders = new Set<string>();

  /** Why a file at path (with this sha256) cannot join, or undefined if it can. */
  clash(path: string, sha256: string | undefined): string | undefined {
    if (this.folders.has(path)) return `${path} is a folder of the tree (it holds other files)`;
    if (this.files.has(path)) {
      const other = this.files.get(path);
      if (other === undefined || sha256 === undefined) return `${path} is a metadata file of the tree`;
      if (other !== sha256) return `${path} is already another item with other content`;
      return undefined;
    }
    for (const folder of foldersOf(path)) {
      if (this.files.has(folder)) return `${folder} is a file of the tree, so ${path} cannot be inside it`;
    }
    return undefined;
  }

  add(path: string, sha256: string | undefined): void {
    this.files.set(path, sha256);
    for (const folder of foldersOf(path)) this.folders.add(folder);
  }
}

/** "a/b/c" → ["a", "a/b"]. */
function foldersOf(path: string): string[] {
  const out: string[] = [];
  for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i));
  return out;
}

/**
 * The contents with every version that clashes with the metadata or with an
 * item taken before it left out (products and contents left empty go too),
 * and what was left out. First come, first kept: contents in the order
 * given, products and versions in document order.
 */
export function leaveOutPathConflicts(contents: readonly PublishContent[]): { contents: PublishContent[]; conflicts: PathConflict[] } {
  const taken = new TreePaths();
  for (const path of metadataPaths(contents)) taken.add(path, undefined);
  const conflicts: PathConflict[] = [];
  const kept: PublishContent[] = [];
  for (const c of contents) {
    const products: ProductsDocument['products'] = {};
    let changed = false;
    for (const [productId, product] of Object.entries(c.doc.products)) {
      const versions: Product['versions'] = {};
      for (const [version, v] of Object.entries(product.versions)) {
        const clash = versionClash(taken, Object.values(v.items));
        if (clash) {
          conflicts.push({ source: c.source, contentId: c.contentId, productId, version, ...clash });
          changed = true;
          continue;
        }
        for (const item of Object.values(v.items)) taken.add(item.path, item.sha256);
        versions[version] = v;
      }
      if (Object.keys(versions).length > 0) products[productId] = changed ? { ...product, versions } : product;
    }
    if (!changed) kept.push(c);
    else if (Object.keys(products).length > 0) kept.push({ ...c, doc: { ...c.doc, products } });
  }
  return { contents: kept, conflicts };
}

/** The first clash of a version's items with the tree, or with one another. */
function versionClash(taken: TreePaths, items: readonly { path: string; sha256: string }[]): { path: string; reason: string } | undefined {
  const own = new TreePaths();
  for (const item of items) {
    const reason = taken.clash(item.path, item.sha256) ?? own.clash(item.path, item.sha256);
    if (reason !== undefined) return { path: item.path, reason };
    own.add(item.path, item.sha256);
  }
  return undefined;
}
