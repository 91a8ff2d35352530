import { ExportError } from '../errors.js';
import { fatSafePath } from '../simplestreams/fat-names.js';
import type { IndexDocument, ProductsDocument } from '../simplestreams/types.js';
import type { PublishContent } from './next-tree.js';

export interface ExportTree {
  /** index.sjson (entries point at .sjson) and index.json (entries point at .json). */
  readonly signed: IndexDocument;
  readonly plain: IndexDocument;
  readonly products: readonly { readonly basePath: string; readonly doc: ProductsDocument }[];
  /** Item path in the snapshot → its FAT-safe path in the export. */
  readonly itemPaths: ReadonlyMap<string, string>;
}

/**
 * The snapshot's documents with every file name FAT-safe: products files
 * renamed (the index says where they are) and item paths rewritten in the
 * products files. Two names that would meet on FAT (which ignores case) are
 * refused rather than merged.
 */
export function renderExportTree(index: IndexDocument, contents: Iterable<PublishContent>): ExportTree {
  const taken = new Map<string, string>();
  const claim = (original: string, safe: string) => {
    const key = safe.toLowerCase();
    const other = taken.get(key);
    if (other !== undefined && other !== original) {
      throw new ExportError(`${original} and ${other} would share the name ${safe} on a FAT/exFAT disk; nothing was exported`);
    }
    taken.set(key, original);
    return safe;
  };
  const itemPaths = new Map<string, string>();
  const signed: IndexDocument = { ...index, index: {} };
  const plain: IndexDocument = { ...index, index: {} };
  const products: { basePath: string; doc: ProductsDocument }[] = [];
  for (const c of contents) {
    const entry = index.index[c.contentId];
    if (!entry) continue;
    const basePath = fatSafePath(c.basePath);
    for (const ext of ['.json', '.sjson', '.json.gpg']) claim(`${c.basePath}${ext}`, `${basePath}${ext}`);
    signed.index[c.contentId] = { ...entry, path: `${basePath}.sjson` };
    plain.index[c.contentId] = { ...entry, path: `${basePath}.json` };
    products.push({ basePath, doc: mapItems(c.doc, (p) => {
      const safe = claim(p, fatSafePath(p));
      itemPaths.set(p, safe);
      return safe;
    }) });
  }
  for (const name of ['index.json', 'index.sjson', 'index.json.gpg']) claim(`streams/v1/${name}`, `streams/v1/${name}`);
  return { signed, plain, products, itemPaths };
}

function mapItems(doc: ProductsDocument, map: (path: string) => string): ProductsDocument {
  const products: ProductsDocument['products'] = {};
  for (const [pid, product] of Object.entries(doc.products)) {
    const versions: typeof product.versions = {};
    for (const [vid, version] of Object.entries(product.versions)) {
      const items: typeof version.items = {};
      for (const [name, item] of Object.entries(version.items)) items[name] = { ...item, path: map(item.path) };
      versions[vid] = { ...version, items };
    }
    products[pid] = { ...product, versions };
  }
  return { ...doc, products };
}
