import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { basename, join, sep } from 'node:path';
import { LRUCache } from 'lru-cache';
import { AmbiguousHashError, BootTemplateError, errnoOf, ManifestUnreadableError, type MirrorError, NoSnapshotError, NotFoundError, NotHeldError, UnsafePathError } from '../errors.js';
import type { Logger } from '../log.js';
import { MAX_BOOT_FILE_BYTES, TEMPLATE_SUFFIX, type BootFilesConfig } from './boot-files.js';
import { MAX_TEMPLATE_BYTES, renderTemplate } from './boot-template.js';
import { buildImageIndex, type ImageIndex } from './image-index.js';
import type { Layout } from './layout.js';
import { readManifest, type ManifestFile, type SnapshotManifest } from './manifest.js';
import type { BootloaderCandidate } from './boot-methods.js';
import { classify } from './routes.js';
import { safeRelativePath } from './safe-path.js';

/**
 * The one map from a request path (HTTP or TFTP) to a file of the current
 * snapshot or of the unpacked bootloaders. Both servers go through it, so a
 * path that is safe, a hash prefix or a bootloader name means the same
 * thing whichever protocol asked.
 */

/**
 * `boot`: a file of boot.files as it is; `template`: a boot.files NAME.tmpl rendered against snapshot
 * rootId. Both are read anew at each request (readBootFile), never cached by cacheKey: the operator may edit them.
 */
export type TargetKind = 'metadata' | 'item' | 'bootloader' | 'boot' | 'template';

/** A located file, not yet opened. Its bytes never change for a given cacheKey. */
export interface Target {
  readonly kind: TargetKind;
  /** Snapshot id, or the id of the unpacked bootloaders. */
  readonly rootId: string;
  /** Real path of the tree the file must stay inside. */
  readonly root: string;
  /** Relative to root. */
  readonly path: string;
  /** Items: from the manifest. */
  readonly sha256?: string;
  readonly size?: number;
  /** True when the URL always names these same bytes (an item path or a full hash). */
  readonly immutable: boolean;
  readonly cacheKey: string;
}

export interface OpenedFile {
  readonly target: Target;
  readonly handle: FileHandle;
  readonly size: number;
  readonly mtime: Date;
  readonly stats: Stats;
  close(): Promise<void>;
}

/** A boot file read whole (templates rendered): what both servers send. */
export interface BootFileBytes {
  readonly data: Buffer;
  readonly sha256: string;
  readonly mtime: Date;
}

export type Located = { readonly ok: true; readonly target: Target } | { readonly ok: false; readonly error: MirrorError };

interface SnapshotIndex {
  readonly id: string;
  readonly root: string;
  readonly manifest: SnapshotManifest;
  readonly byPath: ReadonlyMap<string, ManifestFile>;
  /** Distinct sha256, sorted, each with one path that holds it (a held one when there is). */
  readonly hashes: readonly string[];
  readonly pathOf: ReadonlyMap<string, string>;
}

export interface ResolverOptions {
  readonly layout: Layout;
  readonly logger?: Logger;
  /** Hash-prefix answers kept per snapshot. */
  readonly prefixCacheSize?: number;
  /**
   * How long a readlink of `current`/`bootloaders` is trusted (default 1 s).
   * A thread-pool readlink per request costs more than the rest of a cached
   * metadata answer; invalidate() makes a publish visible at once.
   */
  readonly linkTtlMs?: number;
  /** boot.files, asked at each request (the configuration may be reloaded). */
  readonly bootFiles?: () => BootFilesConfig | undefined;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const MAX_CANDIDATES = 32;

export class Resolver {
  private readonly layout: Layout;
  private readonly logger: Logger | undefined;
  private readonly indexes = new LRUCache<string, Promise<SnapshotIndex>>({ max: 4 });
  private readonly prefixes: LRUCache<string, Located>;
  private readonly bootRoots = new LRUCache<string, Promise<string>>({ max: 4 });
  private readonly bootNames: LRUCache<string, Located>;
  private readonly linkTtlMs: number;
  // Layout builds paths on each access; the hot path asks for these on every request.
  private readonly currentLink: string;
  private readonly bootloadersLink: string;
  /** link + id → when the link was switched to that id (bounded: one entry per switch seen). */
  private readonly switchedAt = new LRUCache<string, Date>({ max: 64 });
  private readonly links = new Map<string, { readonly id: Promise<string | undefined>; readonly until: number; settled?: string }>();
  private readonly bootFiles: (() => BootFilesConfig | undefined) | undefined;
  private readonly images = new LRUCache<string, Promise<ImageIndex>>({ max: 4 });

  constructor(options: ResolverOptions) {
    this.layout = options.layout;
    this.logger = options.logger;
    this.prefixes = new LRUCache({ max: options.prefixCacheSize ?? 10_000 });
    this.bootNames = new LRUCache({ max: 1_000 });
    this.linkTtlMs = options.linkTtlMs ?? 1_000;
    this.currentLink = this.layout.current;
    this.bootloadersLink = this.layout.bootloaders;
    this.bootFiles = options.bootFiles;
  }

  /** Drops every cached index and answer; call after a publish (reads also notice `current` changing on their own). */
  invalidate(): void {
    this.indexes.clear();
    this.prefixes.clear();
    this.bootRoots.clear();
    this.bootNames.clear();
    this.links.clear();
    this.images.clear();
  }

  /** The snapshot `current` points at (read at most once per linkTtlMs unless fresh). */
  currentId(options: { fresh?: boolean } = {}): Promise<string | undefined> {
    return this.linkId(this.currentLink, options.fresh);
  }

  /** The unpacked bootloaders `bootloaders` points at. */
  bootloadersId(options: { fresh?: boolean } = {}): Promise<string | undefined> {
    return this.linkId(this.bootloadersLink, options.fresh);
  }

  private linkId(link: string, fresh = false): Promise<string | undefined> {
    const now = Date.now();
    const known = this.links.get(link);
    if (known && !fresh && now < known.until) return known.id;
    const id = this.readId(link);
    const entry: { id: Promise<string | undefined>; until: number; settled?: string } = { id, until: now + this.linkTtlMs };
    this.links.set(link, entry);
    id.then(
      (value) => (entry.settled = value),
      () => this.links.delete(link),
    );
    return id;
  }

  /**
   * What `current` (or `bootloaders`) names right now if a read of it is
   * still trusted, without waiting: undefined means "ask currentId()". Lets a
   * cached answer be served with no await at all.
   */
  trustedId(root: 'current' | 'bootloaders'): string | undefined {
    const known = this.links.get(root === 'current' ? this.currentLink : this.bootloadersLink);
    return known && Date.now() < known.until ? known.settled : undefined;
  }

  /** The manifest of the current snapshot, or undefined before the first publish. */
  async currentManifest(): Promise<SnapshotManifest | undefined> {
    const id = await this.currentId();
    return id === undefined ? undefined : (await this.index(id)).manifest;
  }

  /** A path relative to the region tree root (already decoded, or raw with decode). */
  async locateTree(path: string, options: { decode?: boolean } = {}): Promise<Located> {
    const safe = safeRelativePath(path, options);
    if (safe === undefined) return unsafe(path);
    const id = await this.currentId();
    if (id === undefined) return { ok: false, error: new NoSnapshotError() };
    const index = await this.index(id);
    const file = index.byPath.get(safe);
    if (file && !file.held) return { ok: false, error: new NotHeldError({ ...file, path: safe }) };
    return {
      ok: true,
      target: {
        kind: file ? 'item' : 'metadata',
        rootId: id,
        root: index.root,
        path: safe,
        sha256: file?.sha256,
        size: file?.size,
        immutable: file !== undefined,
        cacheKey: `s:${id}:${safe}`,
      },
    };
  }

  /** A rack-facing path: hash prefix, bootloader folder or bare bootloader name. */
  async locate(path: string, options: { decode?: boolean } = {}): Promise<Located> {
    const safe = safeRelativePath(path, options);
    if (safe === undefined) return unsafe(path);
    const route = classify(safe);
    switch (route.kind) {
      case 'hash':
        return this.locateHash(route.prefix);
      case 'bootloader':
        return this.locateBootloader(route.candidates, safe);
      default:
        return this.locateBootFile(safe);
    }
  }

  /** A file of boot.files: NAME as it is, else NAME.tmpl (rendered). The .tmpl name itself is not served. */
  private async locateBootFile(safe: string): Promise<Located> {
    const config = this.bootFiles?.();
    const nothing: Located = { ok: false, error: new NotFoundError(`nothing is served at /${safe}`) };
    if (!config || safe === '' || safe.endsWith(TEMPLATE_SUFFIX)) return nothing;
    let root: string;
    try {
      root = await realpath(config.dir);
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT' && errnoOf(err) !== 'ENOTDIR') throw err;
      this.logger?.warn({ dir: config.dir }, 'the boot.files folder does not exist');
      return nothing;
    }
    if (await isRegularFileInside(root, safe)) {
      return { ok: true, target: { kind: 'boot', rootId: 'boot.files', root, path: safe, immutable: false, cacheKey: `f:${safe}` } };
    }
    const template = `${safe}${TEMPLATE_SUFFIX}`;
    if (!(await isRegularFileInside(root, template))) return nothing;
    const id = await this.currentId();
    if (id === undefined) return { ok: false, error: new NoSnapshotError() };
    return { ok: true, target: { kind: 'template', rootId: id, root, path: template, immutable: false, cacheKey: `t:${id}:${safe}` } };
  }

  /**
   * The bytes of a boot file: read whole (size-capped), and for a template
   * rendered against its snapshot. A template naming an image the snapshot
   * does not hold is a NotFoundError, logged with the images it lacks.
   */
  async readBootFile(target: Target): Promise<BootFileBytes> {
    const file = await this.open(target);
    let data: Buffer;
    try {
      const cap = target.kind === 'template' ? MAX_TEMPLATE_BYTES : MAX_BOOT_FILE_BYTES;
      if (file.size > cap) {
        if (target.kind === 'template') throw new BootTemplateError(target.path, `it is larger than ${cap} bytes`);
        throw new NotFoundError(`/${target.path} is larger than ${cap} bytes, the limit for a boot file; serve it from the tree instead`);
      }
      data = Buffer.alloc(file.size);
      let pos = 0;
      while (pos < data.length) {
        const { bytesRead } = await file.handle.read(data, pos, data.length - pos, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
      }
      data = data.subarray(0, pos);
    } finally {
      await file.close();
    }
    const mtime = this.lastModified(target, file.mtime);
    if (target.kind === 'template') data = await this.render(target, data);
    return { data, sha256: createHash('sha256').update(data).digest('hex'), mtime };
  }

  private async render(target: Target, template: Buffer): Promise<Buffer> {
    const images = await this.imageIndex(target.rootId);
    const name = target.path.slice(0, -TEMPLATE_SUFFIX.length);
    const result = renderTemplate(target.path, template.toString('utf8'), {
      server: this.bootFiles?.()?.server,
      imagePath: (image) => {
        const found = images.get(image);
        return found && `/images/${found.sha256}/${found.ftype}`;
      },
    });
    if (result.ok) return Buffer.from(result.text);
    this.logger?.warn({ file: name, snapshot: target.rootId, missing: result.missing }, `boot file ${name} not served: snapshot ${target.rootId} has no image ${result.missing.join(', ')}`);
    throw new NotFoundError(`/${name} names ${result.missing.join(', ')}, which snapshot ${target.rootId} does not hold; sync that image or fix ${target.path}`);
  }

  private imageIndex(id: string): Promise<ImageIndex> {
    let p = this.images.get(id);
    if (!p) {
      p = this.index(id).then((index) => buildImageIndex(index.root, index.manifest));
      this.images.set(id, p);
      p.catch(() => this.images.delete(id));
    }
    return p;
  }

  /** Selects among the files the current snapshot lists by the first 7 to 64 hex digits of their sha256. */
  async locateHash(prefix: string): Promise<Located> {
    const id = await this.currentId();
    if (id === undefined) return { ok: false, error: new NoSnapshotError() };
    const key = `${id}:${prefix}`;
    const hit = this.prefixes.get(key);
    if (hit) return hit;
    const index = await this.index(id);
    const found = matchPrefix(index.hashes, prefix);
    let answer: Located;
    if (found.length === 0) {
      answer = { ok: false, error: new NotFoundError(`no file of snapshot ${id} has a sha256 starting with ${prefix}`) };
    } else if (found.length > 1) {
      answer = { ok: false, error: new AmbiguousHashError(prefix, found) };
    } else {
      const sha256 = found[0]!;
      const path = index.pathOf.get(sha256)!;
      const file = index.byPath.get(path)!;
      answer = file.held
        ? {
            ok: true,
            target: {
              kind: 'item',
              rootId: id,
              root: index.root,
              path,
              sha256,
              size: file.size,
              immutable: prefix.length === 64,
              cacheKey: `s:${id}:${path}`,
            },
          }
        : { ok: false, error: new NotHeldError({ ...file, path }) };
    }
    this.prefixes.set(key, answer);
    return answer;
  }

  private async locateBootloader(candidates: readonly BootloaderCandidate[], asked: string): Promise<Located> {
    const id = await this.bootloadersId();
    if (id === undefined) return { ok: false, error: new NoSnapshotError('set of bootloaders') };
    const key = `${id}:${asked}`;
    const hit = this.bootNames.get(key);
    if (hit) return hit;
    const root = await this.bootRoot(id);
    let answer: Located = {
      ok: false,
      error: new NotFoundError(
        `no bootloader ${asked}: the current bootloaders (${id}) have no ${candidates.map((c) => `${c.bootloaderType}/${c.arch}/${c.file}`).join(' or ')}`,
      ),
    };
    for (const c of candidates) {
      const path = `${c.bootloaderType}/${c.arch}/${c.file}`;
      const target: Target = { kind: 'bootloader', rootId: id, root, path, immutable: false, cacheKey: `b:${id}:${path}` };
      if (await isFileInside(root, path)) {
        answer = { ok: true, target };
        break;
      }
    }
    this.bootNames.set(key, answer);
    return answer;
  }

  /**
   * Opens a located file. The open handle keeps its inode, so a download that
   * began before `current` switched ends with the bytes it began with.
   * Throws NotFoundError for a missing file, a directory, or anything whose
   * real path leaves its tree.
   */
  async open(target: Target): Promise<OpenedFile> {
    const full = join(target.root, target.path);
    let real: string;
    try {
      real = await realpath(full);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR' || errnoOf(err) === 'ELOOP') throw notFound(target);
      throw err;
    }
    if (!real.startsWith(target.root + sep)) {
      this.logger?.warn({ path: target.path, real, root: target.root }, 'refused a path that resolves outside its tree');
      throw notFound(target);
    }
    let handle: FileHandle;
    try {
      // O_NONBLOCK: a FIFO must not hang a thread-pool thread in open().
      handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ELOOP') throw notFound(target);
      throw err;
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw notFound(target);
      let closed = false;
      return {
        target,
        handle,
        size: stats.size,
        mtime: this.lastModified(target, stats.mtime),
        stats,
        close: async () => {
          if (closed) return;
          closed = true;
          await handle.close();
        },
      };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /**
   * locate + open in one step (what TFTP wants). A publish that switches
   * `current` and prunes the old tree between the two is retried once.
   */
  async resolve(path: string, options: { decode?: boolean; tree?: boolean } = {}): Promise<OpenedFile> {
    for (let attempt = 0; ; attempt++) {
      const located = options.tree ? await this.locateTree(path, options) : await this.locate(path, options);
      if (!located.ok) throw located.error;
      try {
        return await this.open(located.target);
      } catch (err) {
        if (attempt > 0 || !(err instanceof NotFoundError)) throw err;
        const fresh = { fresh: true };
        const now = located.target.kind === 'bootloader' ? await this.bootloadersId(fresh) : await this.currentId(fresh);
        if (now === located.target.rootId) throw err;
      }
    }
  }

  /**
   * Metadata and bootloaders: never older than the switch that made them the
   * served ones, so a rollback (older files, different bytes) is not answered
   * 304 to an If-Modified-Since. Asked at each answer, not cached with the
   * bytes: a rollback by another process does not clear our caches.
   */
  lastModified(target: Pick<Target, 'kind' | 'rootId'>, mtime: Date): Date {
    const link = target.kind === 'bootloader' ? this.bootloadersLink : target.kind === 'metadata' || target.kind === 'template' ? this.currentLink : undefined;
    const switched = link === undefined ? undefined : this.switchedAt.get(`${link}\u0000${target.rootId}`);
    return switched !== undefined && switched > mtime ? switched : mtime;
  }

  private async readId(link: string): Promise<string | undefined> {
    try {
      const id = basename(await readlink(link));
      if (!ID_RE.test(id)) return undefined;
      // The link is made anew at each switch (publish or rollback): its own mtime is when that tree became the one served.
      this.switchedAt.set(`${link}\u0000${id}`, (await lstat(link)).mtime);
      return id;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'EINVAL') return undefined;
      throw err;
    }
  }

  private index(id: string): Promise<SnapshotIndex> {
    let p = this.indexes.get(id);
    if (!p) {
      p = this.buildIndex(id);
      this.indexes.set(id, p);
      p.catch(() => this.indexes.delete(id));
    }
    return p;
  }

  private async buildIndex(id: string): Promise<SnapshotIndex> {
    let manifest: SnapshotManifest;
    try {
      manifest = await readManifest(this.layout, id);
    } catch (err) {
      throw new ManifestUnreadableError(id, { cause: err });
    }
    const root = await realpath(this.layout.snapshot(id));
    const byPath = new Map<string, ManifestFile>();
    const pathOf = new Map<string, string>();
    for (const [path, file] of Object.entries(manifest.files)) {
      byPath.set(path, file);
      const prior = pathOf.get(file.sha256);
      const priorHeld = prior !== undefined && byPath.get(prior)!.held;
      if (prior === undefined || (!priorHeld && file.held) || (priorHeld === file.held && path < prior)) {
        pathOf.set(file.sha256, path);
      }
    }
    const hashes = [...pathOf.keys()].sort();
    this.logger?.debug({ snapshot: id, files: byPath.size, hashes: hashes.length }, 'indexed snapshot');
    return { id, root, manifest, byPath, hashes, pathOf };
  }

  private bootRoot(id: string): Promise<string> {
    let p = this.bootRoots.get(id);
    if (!p) {
      p = realpath(join(this.layout.bootloadersStore, id));
      this.bootRoots.set(id, p);
      p.catch(() => this.bootRoots.delete(id));
    }
    return p;
  }
}

/** Full hashes that start with prefix, by binary search over the sorted list. */
export function matchPrefix(sorted: readonly string[], prefix: string): string[] {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < prefix) lo = mid + 1;
    else hi = mid;
  }
  const out: string[] = [];
  for (let i = lo; i < sorted.length && sorted[i]!.startsWith(prefix) && out.length < MAX_CANDIDATES; i++) {
    out.push(sorted[i]!);
  }
  return out;
}

async function isFileInside(root: string, path: string): Promise<boolean> {
  try {
    const real = await realpath(join(root, path));
    return real.startsWith(root + sep);
  } catch {
    return false;
  }
}

async function isRegularFileInside(root: string, path: string): Promise<boolean> {
  try {
    const real = await realpath(join(root, path));
    return real.startsWith(root + sep) && (await stat(real)).isFile();
  } catch {
    return false;
  }
}

function unsafe(path: string): Located {
  return { ok: false, error: new UnsafePathError(path.slice(0, 200), 'a request') };
}

function notFound(target: Target): NotFoundError {
  if (target.kind === 'boot' || target.kind === 'template') return new NotFoundError(`/${target.path} is not a file in boot.files`);
  return new NotFoundError(`/${target.path} is not in ${target.kind === 'bootloader' ? 'the bootloaders' : 'snapshot'} ${target.rootId}`);
}
