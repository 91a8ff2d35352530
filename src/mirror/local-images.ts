import type { Item, Product, ProductsDocument } from '../simplestreams/types.js';
import { compareVersionKeys } from '../simplestreams/versions.js';
import type { ManifestFile } from '../store/manifest.js';
import type { PublishContent, PublishModel } from './next-tree.js';

/**
 * Site-built images as one products file of MAAS 3.8's single-file kind
 * (`root-tgz` + `manifest`, like upstream's CentOS). The published snapshot is
 * their only record: a sync carries the current snapshot's set forward, and a
 * rollback brings back the set of the snapshot rolled back to.
 */

/** The `source` of the local content in manifests: source names cannot start with "_". */
export const LOCAL_SOURCE = '_local';

/** What MAAS deploys from a root tarball (`root-tgz`). */
export const IMAGE_OSES = ['centos', 'rhel', 'ol', 'suse', 'ubuntu', 'custom'] as const;
export type ImageOs = (typeof IMAGE_OSES)[number];
const OS_TITLES: Record<ImageOs, string> = { centos: 'CentOS', rhel: 'RHEL', ol: 'Oracle Linux', suse: 'SUSE', ubuntu: 'Ubuntu', custom: 'Custom' };

export interface ImageName {
  readonly os: string;
  readonly release: string;
  readonly arch: string;
}

export interface NewImageVersion extends ImageName {
  readonly title?: string;
  readonly subarch: string;
  readonly label: string;
  readonly root: { readonly sha256: string; readonly size: number };
  readonly manifest: { readonly sha256: string; readonly size: number };
}

export interface LocalImage extends ImageName {
  readonly productId: string;
  readonly title: string;
  readonly subarch: string;
  readonly label: string;
  readonly version: string;
  readonly sha256: string;
  readonly size: number;
  readonly path: string;
}

export function productIdOf(contentId: string, n: ImageName): string {
  return `${contentId}:${n.os}:${n.release}:${n.arch}`;
}

export function localContentOf(contents: Iterable<PublishContent>): PublishContent | undefined {
  for (const c of contents) if (c.source === LOCAL_SOURCE) return c;
  return undefined;
}

/** The upstream contents only: the local one is added by withLocalContent. */
export function upstreamContentsOf(contents: Iterable<PublishContent>): PublishContent[] {
  return [...contents].filter((c) => c.source !== LOCAL_SOURCE);
}

/**
 * A products file holding these products under `contentId` (the configured
 * one: a renamed content id moves the images with it), or undefined when empty.
 */
export function localContent(contentId: string, products: Readonly<Record<string, Product>>): PublishContent | undefined {
  if (Object.keys(products).length === 0) return undefined;
  const renamed: Record<string, Product> = {};
  for (const p of Object.values(products)) renamed[productIdOf(contentId, { os: String(p.os), release: String(p.release), arch: String(p.arch) })] = p;
  const doc: ProductsDocument = { content_id: contentId, datatype: 'image-downloads', format: 'products:1.0', updated: '', products: renamed };
  return { contentId, source: LOCAL_SOURCE, basePath: `streams/v1/${contentId}`, entry: { datatype: 'image-downloads', format: 'products:1.0' } as PublishContent['entry'], doc };
}

/**
 * The model plus the local content. The fingerprint stays upstream's: local
 * images change only by `images add`/`remove`, which always publish, so a
 * sync compares (and a rollback hold remembers) what upstream offered alone.
 */
export function withLocalContent(model: PublishModel, local: PublishContent | undefined, held: (sha256: string) => boolean): PublishModel {
  if (!local) return model;
  const contents = [...model.contents.filter((c) => c.source !== LOCAL_SOURCE), local].sort((a, b) =>
    a.contentId < b.contentId ? -1 : a.contentId > b.contentId ? 1 : 0,
  );
  const files = new Map<string, ManifestFile>(model.files);
  for (const p of Object.values(local.doc.products)) {
    for (const v of Object.values(p.versions)) {
      for (const item of Object.values(v.items)) {
        if (!files.has(item.path)) {
          files.set(item.path, { sha256: item.sha256, size: item.size, source: LOCAL_SOURCE, held: held(item.sha256), ...(typeof item.ftype === 'string' ? { ftype: item.ftype } : {}) });
        }
      }
    }
  }
  return { ...model, contents, files };
}

/** Only versions whose files are all in the store: a blob `verify` quarantined cannot be fetched again. */
export function keepHeldLocal(local: PublishContent | undefined, held: (sha256: string) => boolean): PublishContent | undefined {
  if (!local) return undefined;
  const products: Record<string, Product> = {};
  for (const [id, p] of Object.entries(local.doc.products)) {
    const versions = Object.fromEntries(Object.entries(p.versions).filter(([, v]) => Object.values(v.items).every((i) => held(i.sha256))));
    if (Object.keys(versions).length > 0) products[id] = { ...p, versions };
  }
  return localContent(local.contentId, products);
}

/** `YYYYMMDD_NN` (like upstream's CentOS), after every existing key even if the clock went back. */
export function nextVersionKey(existing: readonly string[], now: Date): string | undefined {
  const day = now.toISOString().slice(0, 10).replace(/-/g, '');
  const newest = [...existing].sort(compareVersionKeys).at(-1);
  const m = newest ? /^(\d{8})_(\d{2})$/.exec(newest) : null;
  let [prefix, n] = [day, 1];
  if (m && m[1]! >= day) [prefix, n] = [m[1]!, Number(m[2]) + 1];
  else if (newest && compareVersionKeys(newest, `${day}_01`) >= 0) return undefined;
  // Two digits keep byte order equal to age; a hundredth build in a day would sort before the first.
  return n > 99 ? undefined : `${prefix}_${String(n).padStart(2, '0')}`;
}

/** The products with a new version of this image, trimmed to the newest maxVersions. */
export function addImageVersion(
  contentId: string,
  products: Readonly<Record<string, Product>>,
  image: NewImageVersion,
  version: string,
  maxVersions: number,
): Record<string, Product> {
  const productId = productIdOf(contentId, image);
  const old = products[productId];
  const base = `local/${image.os}/${image.release}/${image.arch}/${version}`;
  const items: Record<string, Item> = {
    manifest: { ftype: 'manifest', path: `${base}/root-tgz.manifest`, sha256: image.manifest.sha256, size: image.manifest.size },
    'root-tgz': { ftype: 'root-tgz', path: `${base}/root-tgz`, sha256: image.root.sha256, size: image.root.size },
  };
  const versions = { ...(old?.versions ?? {}), [version]: { items } };
  const keep = Object.keys(versions).sort(compareVersionKeys).slice(-maxVersions);
  const product: Product = {
    arch: image.arch,
    label: image.label,
    os: image.os,
    release: image.release,
    release_title: image.title ?? `${OS_TITLES[image.os as ImageOs] ?? image.os} ${image.release}`,
    subarch: image.subarch,
    subarches: image.subarch,
    version: image.release,
    versions: Object.fromEntries(keep.map((k) => [k, versions[k]!])),
  };
  return { ...products, [productId]: product };
}

/** Every version of every local image, newest version last. */
export function listLocalImages(local: PublishContent | undefined): LocalImage[] {
  const out: LocalImage[] = [];
  for (const [productId, p] of Object.entries(local?.doc.products ?? {})) {
    for (const version of Object.keys(p.versions).sort(compareVersionKeys)) {
      const root = p.versions[version]!.items['root-tgz'];
      if (!root) continue;
      out.push({
        productId,
        os: String(p.os),
        release: String(p.release),
        arch: String(p.arch),
        title: String(p.release_title),
        subarch: String(p.subarch),
        label: String(p.label),
        version,
        sha256: root.sha256,
        size: root.size,
        path: root.path,
      });
    }
  }
  return out.sort((a, b) => (a.productId < b.productId ? -1 : a.productId > b.productId ? 1 : 0));
}

/** Mirrored products that MAAS would select by the same os/release/arch. */
export function clashingProducts(upstream: Iterable<PublishContent>, n: ImageName): string[] {
  const out: string[] = [];
  for (const c of upstream) {
    if (c.source === LOCAL_SOURCE) continue;
    const top = c.doc as Record<string, unknown>;
    for (const [id, p] of Object.entries(c.doc.products)) {
      const field = (k: string) => String(p[k] ?? top[k] ?? '');
      if (field('os') === n.os && field('release') === n.release && field('arch') === n.arch) out.push(`${id} (${c.contentId})`);
    }
  }
  return out;
}

/**
 * The local content a sync publishes: the current snapshot's, under the
 * configured content id, without versions whose files the store lost and
 * without images a mirrored product now also names (said in `clashes`).
 */
export function localWithoutClashes(
  local: PublishContent | undefined,
  upstream: readonly PublishContent[],
  held: (sha256: string) => boolean,
  contentId: string,
): { local: PublishContent | undefined; clashes: string[] } {
  const kept = keepHeldLocal(local, held);
  const clashes: string[] = [];
  const products: Record<string, Product> = {};
  for (const [id, p] of Object.entries(kept?.doc.products ?? {})) {
    const n = { os: String(p.os), release: String(p.release), arch: String(p.arch) };
    const same = clashingProducts(upstream, n);
    if (same.length === 0) products[id] = p;
    else clashes.push(`local image ${n.os}/${n.release}/${n.arch} left out: the mirrored ${same.join(', ')} has the same os/release/arch, and MAAS could not tell them apart; narrow the source's filters or remove the local image`);
  }
  return { local: localContent(contentId, products), clashes };
}

/**
 * The content id an export gives this mirror's site-built images: the
 * configured one plus this mirror's key id. A site's own images keep the
 * plain id, so HQ's images arrive there as mirrored content beside them
 * instead of meeting the site's images.contentId.
 */
export function exportedLocalContentId(contentId: string, fingerprint: string): string {
  return `${contentId}:from-${fingerprint.slice(-16).toLowerCase()}`;
}

/** The local content renamed for an export (content id, product ids, products file); the rest unchanged. */
export function renameLocalForExport(local: PublishContent, fingerprint: string): PublishContent {
  const contentId = exportedLocalContentId(local.contentId, fingerprint);
  const renamed = localContent(contentId, local.doc.products)!;
  return { ...renamed, source: local.source, entry: local.entry, doc: { ...local.doc, content_id: contentId, products: renamed.doc.products } };
}
