import { link, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { SigningKey } from '../pgp/keys.js';
import { clearsign, clearsignPieces, detachSign, detachSignPieces, type TextPieces } from '../pgp/sign.js';
import { formatRfc2822 } from '../simplestreams/dates.js';
import { batched, jsonPieces } from '../simplestreams/json-pieces.js';
import { validateForMaas, type MaasProblem } from '../simplestreams/maas-rules.js';
import type { IndexDocument, ProductsDocument } from '../simplestreams/types.js';
import type { BlobStore } from '../store/blobs.js';
import { fsyncDir, rethrowDiskFull, writeFileAtomic, writeFileDurable, writePiecesDurable } from '../store/fsutil.js';
import type { Layout } from '../store/layout.js';
import type { SnapshotManifest } from '../store/manifest.js';
import { newSnapshotId, snapshotIds, switchCurrent } from '../store/snapshots.js';
import { productKey, type PublishModel } from './next-tree.js';

export interface PublishOptions {
  layout: Layout;
  store: BlobStore;
  key: SigningKey;
  logger: Logger;
  sources: SnapshotManifest['sources'];
  now?: Date;
}

/**
 * Writes a complete, signed tree into a new snapshot folder, then makes it
 * `current` with one rename. Until that rename nothing a reader can reach has
 * changed; after it, everything has.
 */
export interface RenderedTree {
  /** index.sjson (entries point at .sjson) and index.json (entries point at .json). */
  readonly signed: IndexDocument;
  readonly plain: IndexDocument;
  readonly products: readonly { contentId: string; basePath: string; doc: ProductsDocument }[];
}

/** The documents a snapshot of this model holds, before signing. */
export function renderTree(model: PublishModel, updated: string): RenderedTree {
  const signed: IndexDocument = { format: 'index:1.0', index: {}, updated };
  const plain: IndexDocument = { format: 'index:1.0', index: {}, updated };
  const products: RenderedTree['products'][number][] = [];
  for (const c of model.contents) {
    const doc: ProductsDocument = { ...c.doc, updated };
    products.push({ contentId: c.contentId, basePath: c.basePath, doc });
    const { path: _p, ...entryFields } = c.entry as typeof c.entry & { path?: string };
    const entry = {
      ...entryFields,
      format: 'products:1.0',
      datatype: String(entryFields.datatype ?? doc.datatype ?? 'image-ids'),
      products: Object.keys(doc.products).sort(),
      updated,
    };
    signed.index[c.contentId] = { ...entry, path: `${c.basePath}.sjson` };
    plain.index[c.contentId] = { ...entry, path: `${c.basePath}.json` };
  }
  return { signed, plain, products };
}

/**
 * What MAAS would reject in the snapshot of this model, per product where a
 * problem belongs to one product (MAAS fails the whole products file for it),
 * and for the tree as a whole otherwise.
 */
export function maasProblems(model: PublishModel): { byProduct: Map<string, MaasProblem[]>; tree: MaasProblem[] } {
  const { plain, products } = renderTree(model, formatRfc2822(new Date()));
  const docs = new Map(products.map((p) => [`${p.basePath}.json`, p]));
  const byProduct = new Map<string, MaasProblem[]>();
  const tree: MaasProblem[] = [];
  for (const problem of validateForMaas(plain, new Map([...docs].map(([path, p]) => [path, p.doc])))) {
    const file = [...docs.keys()].find((path) => problem.where.startsWith(`${path} products[`));
    const m = file === undefined ? null : /^\S+ products(\["(?:[^"\\]|\\.)*"\])/.exec(problem.where);
    const productId = m ? (JSON.parse(m[1]!) as string[])[0] : undefined;
    if (file === undefined || productId === undefined) {
      tree.push(problem);
      continue;
    }
    const key = productKey(docs.get(file)!.contentId, productId);
    byProduct.set(key, [...(byProduct.get(key) ?? []), problem]);
  }
  return { byProduct, tree };
}

export async function publishSnapshot(model: PublishModel, opts: PublishOptions): Promise<SnapshotManifest> {
  const now = opts.now ?? new Date();
  const id = newSnapshotId(now, await snapshotIds(opts.layout));
  const updated = formatRfc2822(now);
  const building = join(opts.layout.snapshotsDir, `.building-${id}`);
  const dirs = new Set<string>();
  const ensureDir = async (file: string) => {
    const d = dirname(file);
    if (!dirs.has(d)) {
      await mkdir(d, { recursive: true });
      for (let p = d; p.startsWith(building) && !dirs.has(p); p = dirname(p)) dirs.add(p);
    }
  };
  try {
    await mkdir(building, { recursive: true });
    const { signed, plain, products } = renderTree(model, updated);
    for (const { basePath, doc } of products) {
      const base = join(building, basePath);
      await ensureDir(base);
      await writeSignedTriple(base, () => lineSafeJsonPieces(doc, PRODUCTS_DEPTH), opts.key);
    }
    const indexBase = join(building, 'streams', 'v1', 'index');
    await ensureDir(indexBase);
    const plainText = lineSafeJson(plain);
    await writeFileDurable(`${indexBase}.json`, plainText);
    await writeFileDurable(`${indexBase}.json.gpg`, await detachSign(Buffer.from(plainText), opts.key.privateKey));
    await writeFileDurable(`${indexBase}.sjson`, await clearsign(lineSafeJson(signed), opts.key.privateKey));

    for (const [path, f] of model.files) {
      if (!f.held) continue;
      const target = join(building, path);
      await ensureDir(target);
      await link(opts.store.path(f.sha256), target);
    }
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) await fsyncDir(d);
    await rename(building, opts.layout.snapshot(id));
    await fsyncDir(opts.layout.snapshotsDir);
  } catch (err) {
    await rm(building, { recursive: true, force: true }).catch(() => undefined);
    throw rethrowDiskFull(err, opts.layout.snapshotsDir);
  }

  const manifest: SnapshotManifest = {
    id,
    created: now.toISOString(),
    sources: opts.sources,
    files: Object.fromEntries(model.files),
    bootloaders: model.bootloaders,
    contents: model.contents.map((c) => ({ contentId: c.contentId, source: c.source, basePath: c.basePath })),
    fingerprint: model.fingerprint,
    signedBy: opts.key.fingerprint,
  };
  await mkdir(opts.layout.manifestsDir, { recursive: true });
  await writeFileAtomic(opts.layout.manifest(id), JSON.stringify(manifest) + '\n');
  await switchCurrent(opts.layout, id);
  opts.logger.info({ snapshot: id, files: model.files.size, contents: model.contents.length }, 'published a new snapshot');
  return manifest;
}

/** A products document's levels opened when it is written in pieces: the document, its products. */
const PRODUCTS_DEPTH = 2;
/** Pieces of a products file are gathered to this many characters before a write or a hash update. */
const PIECE_CHARS = 64 * 1024;

/**
 * The three forms of a products file, each made from pieces of its text produced afresh: the
 * 12 MB text of 10,000 products never exists as one string, nor as the copies signing made of it.
 */
async function writeSignedTriple(base: string, text: TextPieces, key: SigningKey): Promise<void> {
  await writePiecesDurable(`${base}.json`, text());
  await writePiecesDurable(`${base}.sjson`, clearsignPieces(text, key.privateKey));
  await writeFileDurable(`${base}.json.gpg`, await detachSignPieces(text, key.privateKey));
}

/**
 * JSON as published: U+0085, U+2028 and U+2029 written as escapes. JSON.stringify leaves them raw,
 * and the simplestreams reader MAAS uses splits a signed file with Python's splitlines(), which ends a
 * line at each of them: a raw one inside a string would break the document it rejoins.
 */
export function lineSafeJson(value: unknown): string {
  return lineSafe(JSON.stringify(value, null, 1)) + '\n';
}

/** lineSafeJson's text in pieces of about PIECE_CHARS, the first `depth` levels opened (json-pieces.ts). */
export function* lineSafeJsonPieces(value: unknown, depth: number): Generator<string> {
  for (const piece of batched(jsonPieces(value, { space: 1, depth }), PIECE_CHARS)) yield lineSafe(piece);
  yield '\n';
}

function lineSafe(json: string): string {
  return json.replace(/[\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
