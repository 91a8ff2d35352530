import { createHash } from 'node:crypto';
import { readdir, readFile, realpath } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { IndexDocument, ProductsDocument } from '../../src/simplestreams/types.js';

export async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

export async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

export interface PublishedTree {
  root: string;
  index: IndexDocument;
  products: Map<string, ProductsDocument>;
  /** relative path → file */
  files: string[];
}

/** Reads the tree `current` points to, as a client would. */
export async function readCurrent(dataDir: string): Promise<PublishedTree> {
  const root = await realpath(join(dataDir, 'current'));
  const index = JSON.parse(await readFile(join(root, 'streams/v1/index.json'), 'utf8')) as IndexDocument;
  const products = new Map<string, ProductsDocument>();
  for (const [id, e] of Object.entries(index.index)) {
    products.set(id, JSON.parse(await readFile(join(root, e.path), 'utf8')) as ProductsDocument);
  }
  const files = (await walk(root)).map((f) => relative(root, f)).sort();
  return { root, index, products, files };
}

/** product id → sorted version keys */
export function versionsOf(tree: PublishedTree): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const doc of tree.products.values()) {
    for (const [pid, p] of Object.entries(doc.products)) out[pid] = Object.keys(p.versions).sort();
  }
  return out;
}

export function itemPaths(tree: PublishedTree): Set<string> {
  const s = new Set<string>();
  for (const doc of tree.products.values())
    for (const p of Object.values(doc.products))
      for (const v of Object.values(p.versions)) for (const i of Object.values(v.items)) s.add(i.path);
  return s;
}
