import { readFile, stat } from 'node:fs/promises';
import type { Config } from '../config/load.js';
import { ImageNotFoundError, ImageRefusedError, MaasRulesError } from '../errors.js';
import type { Logger } from '../log.js';
import { loadOrCreateSigningKey } from '../pgp/keys.js';
import type { Product } from '../simplestreams/types.js';
import { BlobStore } from '../store/blobs.js';
import { unpackBootloaders } from '../store/bootloaders.js';
import { readHold, writeHold } from '../store/hold.js';
import { Layout } from '../store/layout.js';
import { acquireLock } from '../store/lock.js';
import type { SnapshotManifest } from '../store/manifest.js';
import { checkRootTarball, storeBytes, storeLocalFile } from './image-file.js';
import {
  addImageVersion,
  clashingProducts,
  IMAGE_OSES,
  listLocalImages,
  localContent,
  localContentOf,
  nextVersionKey,
  upstreamContentsOf,
  withLocalContent,
  type ImageName,
  type LocalImage,
} from './local-images.js';
import { buildModel, type PublishContent } from './next-tree.js';
import { readPublished, type Published } from './published.js';
import { maasProblems, publishSnapshot } from './publish.js';

/** A manifest given with --manifest is a package list: a few hundred KiB in practice. */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const ARCH_RE = /^[a-z0-9_]{1,32}$/;
const DD_OSES = new Set(['windows', 'esxi', 'vmware', 'vmware-esxi']);

export interface ImagesContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly now?: Date;
  /** Told once the new snapshot is current (the daemon drops its caches). */
  readonly onPublished?: (snapshotId: string) => void | Promise<void>;
}

export interface AddImageRequest {
  readonly file: string;
  readonly os: string;
  readonly release: string;
  readonly arch: string;
  readonly title?: string;
  readonly subarch?: string;
  readonly label?: string;
  readonly manifestFile?: string;
  readonly onBytes?: (n: number) => void;
}

export interface AddImageResult {
  readonly snapshot: string;
  readonly image: LocalImage;
  /** Versions of this image the snapshot no longer lists (images.maxVersions). */
  readonly trimmed: readonly string[];
  readonly linked: boolean;
  readonly manifestGenerated: boolean;
}

export interface RemoveImageResult {
  readonly snapshot: string;
  readonly removed: readonly LocalImage[];
}

/** Refuses a name MAAS could not deploy or we could not lay out, before anything is read or stored. */
export function checkImageName(r: { os: string; release: string; arch: string; subarch?: string; label?: string; title?: string }): void {
  if (DD_OSES.has(r.os.toLowerCase())) {
    throw new ImageRefusedError(
      `${r.os} images are disk images (root-dd): MAAS 3.8's simplestreams model carries only root-tgz single-file images, ` +
        'so they cannot be published in the boot source. Upload them to the region with "maas $PROFILE boot-resources create"',
    );
  }
  if (!(IMAGE_OSES as readonly string[]).includes(r.os)) {
    throw new ImageRefusedError(`--os ${JSON.stringify(r.os)} is not one MAAS deploys from a root tarball; use one of ${IMAGE_OSES.join(', ')}`);
  }
  for (const [flag, v, re] of [
    ['--release', r.release, NAME_RE],
    ['--arch', r.arch, ARCH_RE],
    ['--subarch', r.subarch ?? 'generic', NAME_RE],
    ['--label', r.label ?? 'stable', NAME_RE],
  ] as const) {
    if (!re.test(v)) throw new ImageRefusedError(`${flag} ${JSON.stringify(v)}: use lowercase letters, digits, ".", "_" or "-"`);
  }
  // eslint-disable-next-line no-control-regex
  if (r.title !== undefined && (r.title === '' || r.title.length > 200 || /[\u0000-\u001f\u007f]/.test(r.title))) {
    throw new ImageRefusedError('--title must be 1 to 200 printable characters');
  }
}

/** Refuses an os/release/arch a mirrored product of the current snapshot has. */
function refuseClash(previous: Published | undefined, name: ImageName): void {
  const clash = clashingProducts(upstreamContentsOf(previous?.contents.values() ?? []), name);
  if (clash.length > 0) {
    throw new ImageRefusedError(
      `${name.os}/${name.release}/${name.arch} is already a mirrored product (${clash.join(', ')}); MAAS selects by os/release/arch, so it could not tell them apart. Use another --release`,
    );
  }
}

/**
 * The checks of addImage that need no file, for a caller that can refuse
 * before receiving one (an upload): the name, and a clash with a mirrored
 * product as the current snapshot stands. addImage checks both again.
 */
export async function checkImageRequest(config: Config, req: Omit<AddImageRequest, 'file'>): Promise<void> {
  checkImageName(req);
  refuseClash(await readPublished(new Layout(config.dataDir)), req);
}

/**
 * Stores a root tarball and publishes a snapshot listing it as a new version,
 * with upstream's contents as the current snapshot holds them: no network.
 * Every refusal comes before anything is stored.
 */
export async function addImage(ctx: ImagesContext, req: AddImageRequest): Promise<AddImageResult> {
  checkImageName(req);
  await checkRootTarball(req.file);
  const manifestText = req.manifestFile === undefined ? undefined : await readManifestFile(req.manifestFile);
  const layout = new Layout(ctx.config.dataDir);
  const store = new BlobStore(layout);
  const lock = await acquireLock(layout.lockFile, 'images add');
  try {
    const previous = await readPublished(layout);
    refuseClash(previous, req);
    const local = localContentOf(previous?.contents.values() ?? []);
    const products = local?.doc.products ?? {};
    const now = ctx.now ?? new Date();
    const existing = products[findProduct(products, req) ?? ''];
    const version = nextVersionKey(Object.keys(existing?.versions ?? {}), now);
    if (!version) throw new ImageRefusedError(`no version key newer than those of ${req.os}/${req.release}/${req.arch} is left for today; add it tomorrow or remove some versions`);

    const root = await storeLocalFile(req.file, layout, store, req.onBytes);
    const manifest = await storeBytes(Buffer.from(manifestText ?? generatedManifest(req, root.sha256, version)), layout, store);
    const contentId = ctx.config.images.contentId;
    const next = addImageVersion(contentId, products, { ...req, subarch: req.subarch ?? 'generic', label: req.label ?? 'stable', root, manifest }, version, ctx.config.images.maxVersions);
    const snapshot = await republish(ctx, layout, store, previous, localContent(contentId, next));
    const image = listLocalImages(localContent(contentId, next)).find((i) => i.version === version && i.os === req.os && i.release === req.release && i.arch === req.arch)!;
    const kept = new Set(Object.keys(next[findProduct(next, req)!]!.versions));
    const trimmed = Object.keys(existing?.versions ?? {}).filter((v) => !kept.has(v));
    ctx.logger.info({ snapshot: snapshot.id, image: image.productId, version, sha256: root.sha256, trimmed }, 'local image added');
    return { snapshot: snapshot.id, image, trimmed, linked: root.linked, manifestGenerated: manifestText === undefined };
  } finally {
    await lock.release();
  }
}

/** Publishes a snapshot without the image (or without one version of it). */
export async function removeImage(ctx: ImagesContext, name: ImageName, version?: string): Promise<RemoveImageResult> {
  const layout = new Layout(ctx.config.dataDir);
  const store = new BlobStore(layout);
  const lock = await acquireLock(layout.lockFile, 'images remove');
  try {
    const previous = await readPublished(layout);
    const local = localContentOf(previous?.contents.values() ?? []);
    const products = { ...(local?.doc.products ?? {}) };
    const id = findProduct(products, name);
    const what = `${name.os}/${name.release}/${name.arch}${version ? ` version ${version}` : ''}`;
    if (id === undefined || (version !== undefined && !(version in products[id]!.versions))) throw new ImageNotFoundError(what);
    const removed = listLocalImages(local).filter((i) => i.productId === id && (version === undefined || i.version === version));
    if (version === undefined || Object.keys(products[id]!.versions).length === 1) delete products[id];
    else {
      const { [version]: _gone, ...versions } = products[id]!.versions;
      products[id] = { ...products[id]!, versions };
    }
    const snapshot = await republish(ctx, layout, store, previous, localContent(ctx.config.images.contentId, products));
    ctx.logger.info({ snapshot: snapshot.id, removed: what }, 'local image removed');
    return { snapshot: snapshot.id, removed };
  } finally {
    await lock.release();
  }
}

/** The local images of the current snapshot. */
export async function listImages(config: Config): Promise<LocalImage[]> {
  const previous = await readPublished(new Layout(config.dataDir));
  return listLocalImages(localContentOf(previous?.contents.values() ?? []));
}

function findProduct(products: Readonly<Record<string, Product>>, n: ImageName): string | undefined {
  return Object.keys(products).find((id) => products[id]!.os === n.os && products[id]!.release === n.release && products[id]!.arch === n.arch);
}

async function readManifestFile(file: string): Promise<string> {
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) throw new ImageRefusedError(`--manifest ${file} is not a readable file`);
  if (st.size > MAX_MANIFEST_BYTES) throw new ImageRefusedError(`--manifest ${file} is larger than ${MAX_MANIFEST_BYTES} bytes; a manifest is a package list`);
  return readFile(file, 'utf8');
}

/** MAAS requires a manifest item; packer-maas writes a package list, we say where the image came from. */
function generatedManifest(req: AddImageRequest, sha256: string, version: string): string {
  return `# generated by maas-mirror images add: no package list was given\nimage\t${req.os}/${req.release}/${req.arch}\nversion\t${version}\nroot-tgz-sha256\t${sha256}\n`;
}

/**
 * The publish step of `images add` and `remove`: upstream's contents exactly as
 * the current snapshot lists them, with this local content, checked against
 * MAAS's rules, signed, switched. A rollback hold follows current.
 */
async function republish(ctx: ImagesContext, layout: Layout, store: BlobStore, previous: Published | undefined, local: PublishContent | undefined): Promise<SnapshotManifest> {
  const upstream = upstreamContentsOf(previous?.contents.values() ?? []);
  const shas = new Map<string, number>();
  for (const c of [...upstream, ...(local ? [local] : [])]) {
    for (const p of Object.values(c.doc.products)) for (const v of Object.values(p.versions)) for (const i of Object.values(v.items)) shas.set(i.sha256, i.size);
  }
  const held = new Set<string>();
  for (const [sha, size] of shas) if (await store.has(sha, size)) held.add(sha);
  const built = buildModel({ builds: [], carried: upstream, held: (sha) => held.has(sha) }).model;
  // Upstream's part is unchanged, so is its fingerprint (what syncs and a rollback hold compare).
  const model = withLocalContent({ ...built, fingerprint: previous?.manifest.fingerprint ?? built.fingerprint }, local, (sha) => held.has(sha));
  if (model.contents.length === 0) {
    throw new ImageRefusedError('that would publish an empty tree (no mirrored products and no other local image); MAAS rejects an empty boot source');
  }
  const problems = maasProblems(model);
  const all = [...problems.tree, ...[...problems.byProduct.values()].flat()];
  if (all.length > 0) throw new MaasRulesError('the tree with this change', all);
  const key = await loadOrCreateSigningKey(layout.keysDir, ctx.config.publish.signingKey, undefined, ctx.config.publish.keyName);
  const sources = previous?.manifest.sources ?? Object.fromEntries(ctx.config.sources.map((s) => [s.name, { url: s.url, onDemand: s.onDemand }]));
  const hold = await readHold(layout);
  const manifest = await publishSnapshot(model, { layout, store, key, logger: ctx.logger, sources, now: ctx.now });
  // The operator changed the tree they rolled back to: syncs keep holding it, now at this snapshot.
  if (hold && hold.snapshot === previous?.manifest.id) await writeHold(layout, { ...hold, snapshot: manifest.id });
  try {
    await unpackBootloaders(layout, manifest, ctx.logger);
  } catch (err) {
    ctx.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'bootloaders not unpacked; the daemon unpacks them when it notices');
  }
  await ctx.onPublished?.(manifest.id);
  return manifest;
}
