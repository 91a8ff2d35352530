import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, rename, rm, stat, symlink, unlink } from 'node:fs/promises';
import { basename, dirname, posix, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Unpack, type ReadEntry } from 'tar';
import xz from 'xz-decompress';
import { errnoOf, MetadataError } from '../errors.js';
import { childLogger, type Logger } from '../log.js';
import type { Layout } from './layout.js';
import type { SnapshotManifest } from './manifest.js';

/**
 * After each publish, the newest bootloader archives are unpacked to
 * bootloaders.d/<snapshot id>/<bootloader-type>/<arch>/ and `bootloaders` is
 * switched to it, so TFTP and HTTP can serve bootx64.efi & co by bare name.
 * The folder switched away from stays until the next switch: a server that
 * read the link a moment before (Namespace trusts it for linkTtlMs) still
 * finds its files. An open download keeps its inode when a folder goes.
 *
 * Every link left in a <type>/<arch> folder resolves inside that folder, as
 * the kernel resolves it (a link is followed before a ".." after it), so the
 * tree can be served by anything that follows links.
 */

export interface RefusedEntry {
  /** Item path of the archive in the snapshot. */
  readonly archive: string;
  readonly entry: string;
  readonly reason: string;
}

export interface UnpackedFolder {
  readonly productId: string;
  readonly version: string;
  readonly bootloaderType: string;
  readonly arch: string;
  readonly archives: readonly string[];
}

export interface UnpackedBootloaders {
  readonly id: string;
  /** Absolute path of bootloaders.d/<id>. */
  readonly dir: string;
  readonly folders: readonly UnpackedFolder[];
  readonly refused: readonly RefusedEntry[];
  /** True when this snapshot had been unpacked before and was only switched to. */
  readonly reused: boolean;
  /**
   * Unpacked folders removed: all but this one and the one the link pointed
   * at before (kept for servers still reading the old link). Nothing when the
   * link already pointed here.
   */
  readonly removed: readonly string[];
}

/** Far above any real bootloader archive (a few MB); stops a decompression bomb. */
export const MAX_UNPACKED_BYTES = 512 * 1024 * 1024;

const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const ALLOWED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

export async function unpackBootloaders(
  layout: Layout,
  manifest: SnapshotManifest,
  logger: Logger,
): Promise<UnpackedBootloaders> {
  const log = childLogger(logger, { component: 'bootloaders', snapshot: manifest.id });
  if (!SEGMENT_RE.test(manifest.id)) throw new MetadataError(layout.manifest(manifest.id), `unusable snapshot id "${manifest.id}"`);
  const store = layout.bootloadersStore;
  const dir = join(store, manifest.id);
  await mkdir(store, { recursive: true });

  const folders: UnpackedFolder[] = [];
  const refused: RefusedEntry[] = [];
  const onRefused = (r: RefusedEntry): void => {
    refused.push(r);
    log.warn({ archive: r.archive, entry: r.entry, reason: r.reason }, 'refused a bootloader archive entry');
  };
  let reused = true;
  if (!(await isDir(dir))) {
    reused = false;
    // Unpacked aside and renamed whole: a folder named after a snapshot id is always complete.
    const tmp = join(store, `.tmp-${manifest.id}-${process.pid}-${randomBytes(3).toString('hex')}`);
    try {
      // Even with no bootloader selected: an empty folder is a valid (empty) set to switch to.
      await mkdir(tmp, { recursive: true });
      for (const b of manifest.bootloaders) {
        if (!SEGMENT_RE.test(b.bootloaderType) || !SEGMENT_RE.test(b.arch)) {
          log.warn({ product: b.productId, bootloaderType: b.bootloaderType, arch: b.arch }, 'skipped a bootloader product with an unusable type or arch');
          continue;
        }
        const dest = join(tmp, b.bootloaderType, b.arch);
        await mkdir(dest, { recursive: true });
        const archives: string[] = [];
        // Symbolic links named so far in this folder, by any of its archives → the archive naming them.
        const links = new Map<string, string>();
        for (const [item, path] of Object.entries(b.items)) {
          const file = Object.hasOwn(manifest.files, path) ? manifest.files[path] : undefined;
          if (!file) {
            log.warn({ product: b.productId, item, path }, 'bootloader item is not in the manifest; skipped');
            continue;
          }
          if (!file.held) {
            log.warn({ product: b.productId, item, path }, 'bootloader archive is not held (on-demand source); its files will be missing until it is');
            continue;
          }
          await unpackArchive(layout.blob(file.sha256), path, dest, links, onRefused);
          archives.push(path);
        }
        await removeEscapingLinks(dest, (entry) => links.get(entry) ?? '(unpacked)', onRefused);
        folders.push({ productId: b.productId, version: b.version, bootloaderType: b.bootloaderType, arch: b.arch, archives });
      }
      await rename(tmp, dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  const previous = await readlink(layout.bootloaders).then(
    (target) => basename(target),
    (err: unknown) => {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'EINVAL') return undefined;
      throw err;
    },
  );
  await switchLink(layout, manifest.id);
  // Kept: this folder and the one just switched away from, which a server may
  // still resolve against until its read of the link expires. Older ones go,
  // and so do folders half-made by a killed run. When the link already
  // pointed here nothing was switched, and the folder the last switch replaced
  // may be in use still: only half-made folders go.
  const removed: string[] = [];
  for (const name of await readdir(store)) {
    if (name === manifest.id || name === previous) continue;
    if (previous === manifest.id && !name.startsWith('.tmp-')) continue;
    await rm(join(store, name), { recursive: true, force: true });
    removed.push(name);
  }
  log.info({ folders: folders.length, refused: refused.length, reused, removed }, 'bootloaders unpacked and switched');
  return { id: manifest.id, dir, folders, refused, reused, removed };
}

/**
 * Why a tar entry may not be unpacked into its folder, or undefined when it may.
 * links: paths (as entryKey gives them) of the symbolic links already named in
 * the folder. The kernel follows a link before applying a ".." after it, so a
 * path that goes through one is not judged on paper: it is refused. (Links
 * named later are caught by removeEscapingLinks once the folder is unpacked.)
 */
export function refuseReason(
  entry: { path: string; type: string; linkpath?: string; size?: number },
  links: { has(path: string): boolean } = new Set<string>(),
): string | undefined {
  if (!ALLOWED_TYPES.has(entry.type)) return `entry type ${entry.type} is not unpacked`;
  if (isAbsolute(entry.path)) return 'absolute path';
  if (hasDotDot(entry.path)) return 'path contains ".."';
  const own = parts(entry.path);
  const via = linkOnTheWay([], own, links, false);
  if (via !== undefined) return `path goes through the link ${via}`;
  if (entry.type === 'SymbolicLink' || entry.type === 'Link') {
    const link = entry.linkpath ?? '';
    if (link === '') return 'link without a target';
    if (isAbsolute(link)) return `${entry.type === 'Link' ? 'hard' : 'symbolic'} link to an absolute path`;
    // A symlink resolves from its own folder; a hard link names a path from the archive root.
    const from = entry.type === 'SymbolicLink' ? posix.dirname(slashes(entry.path)) : '.';
    const resolved = posix.normalize(posix.join(from, slashes(link)));
    if (resolved === '..' || resolved.startsWith('../') || (entry.type === 'Link' && hasDotDot(link))) {
      return `link points outside its folder (${link})`;
    }
    // A symlink may name a link as its last step (checked once unpacked); a hard link may not
    // (link(2) would copy that symlink elsewhere, where its target means something else).
    const through = linkOnTheWay(entry.type === 'SymbolicLink' ? own.slice(0, -1) : [], parts(link), links, entry.type === 'Link');
    if (through !== undefined) return `link target goes through the link ${through} (${link})`;
  }
  return undefined;
}

/** The key of an entry path in refuseReason's links: "./a//b/" → "a/b". */
export function entryKey(path: string): string {
  return parts(path).join('/');
}

/** The first link in links met while stepping from `at` along `steps` (the last step included when last). */
function linkOnTheWay(at: readonly string[], steps: readonly string[], links: { has(path: string): boolean }, last: boolean): string | undefined {
  const here = [...at];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step === '..') {
      here.pop();
      continue;
    }
    here.push(step);
    const key = here.join('/');
    if ((last || i < steps.length - 1) && links.has(key)) return key;
  }
  return undefined;
}

/** Most hops the kernel follows before ELOOP. */
const MAX_HOPS = 40;

/**
 * Walks an unpacked <type>/<arch> folder and removes every symbolic link
 * whose resolution, done step by step as the kernel does it, ever leaves the
 * folder (or loops), whatever order its archives named the links in.
 * A link that merely dangles inside the folder stays.
 */
async function removeEscapingLinks(dest: string, archiveOf: (entry: string) => string, onRefused: (r: RefusedEntry) => void): Promise<void> {
  const root = await realpath(dest);
  const found: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const d of await readdir(rel === '' ? root : join(root, rel), { withFileTypes: true })) {
      const path = rel === '' ? d.name : `${rel}/${d.name}`;
      if (d.isSymbolicLink()) found.push(path);
      else if (d.isDirectory()) await walk(path);
    }
  };
  await walk('');
  // Judged all before removing any: a link through a bad link is bad itself, whichever goes first.
  const bad: { entry: string; reason: string }[] = [];
  for (const entry of found) {
    const reason = await escapeReason(root, entry);
    if (reason !== undefined) bad.push({ entry, reason });
  }
  for (const { entry, reason } of bad) {
    await unlink(join(root, entry));
    onRefused({ archive: archiveOf(entry), entry, reason });
  }
}

/** Why the link at root/entry leaves root when followed, or undefined if it stays inside (or dangles inside). */
async function escapeReason(root: string, entry: string): Promise<string | undefined> {
  const inside = (p: string) => p === root || p.startsWith(root + sep);
  const target = await readlink(join(root, entry));
  const outside = `link resolves outside its folder (${target})`;
  if (isAbsolute(target)) return outside;
  // `at` is always a real directory inside root: only non-link steps move it.
  let at = dirname(join(root, entry));
  let steps = parts(target);
  let hops = 0;
  while (steps.length > 0) {
    const [step, ...rest] = steps as [string, ...string[]];
    steps = rest;
    if (step === '..') {
      at = dirname(at);
      if (!inside(at)) return outside;
      continue;
    }
    const next = join(at, step);
    let isLink: boolean;
    let isDirectory: boolean;
    try {
      const st = await lstat(next);
      isLink = st.isSymbolicLink();
      isDirectory = st.isDirectory();
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') return undefined;
      throw err;
    }
    if (isLink) {
      if (++hops > MAX_HOPS) return `link loops (${target})`;
      const more = await readlink(next);
      if (isAbsolute(more)) return outside;
      steps = [...parts(more), ...steps];
    } else {
      if (!isDirectory && steps.length > 0) return undefined;
      at = next;
    }
  }
  return undefined;
}

async function unpackArchive(
  blob: string,
  archive: string,
  dest: string,
  links: Map<string, string>,
  onRefused: (r: RefusedEntry) => void,
): Promise<void> {
  let total = 0;
  let fatal: Error | undefined;
  const unpack = new Unpack({
    cwd: dest,
    strict: false,
    preserveOwner: false,
    preservePaths: false,
    filter: (path: string, entry) => {
      const e = entry as ReadEntry;
      const reason = refuseReason({ path, type: e.type, linkpath: e.linkpath, size: e.size }, links);
      // Refused or not, a name given to a link is never walked through afterwards.
      if (e.type === 'SymbolicLink' && !links.has(entryKey(path))) links.set(entryKey(path), archive);
      if (reason) {
        onRefused({ archive, entry: path, reason });
        return false;
      }
      total += e.size ?? 0;
      if (total > MAX_UNPACKED_BYTES) {
        fatal ??= new MetadataError(archive, `unpacks to more than ${MAX_UNPACKED_BYTES} bytes; refusing it`);
        return false;
      }
      return true;
    },
    onwarn: (code: string, message: string, data: Readonly<Record<string, unknown>>) => {
      // Entry-level complaints of node-tar itself are refusals too; a broken archive is fatal.
      if (code === 'TAR_BAD_ARCHIVE' || code === 'TAR_ABORT') fatal ??= new MetadataError(archive, `${message}; the archive is damaged`);
      else onRefused({ archive, entry: warnedEntry(data) ?? '(tar)', reason: `${code}: ${message}` });
    },
  });
  const compressed = Readable.toWeb(createReadStream(blob)) as unknown as ReadableStream<Uint8Array>;
  const tarStream = Readable.fromWeb(new xz.XzReadableStream(compressed) as unknown as WebReadableStream<Uint8Array>);
  await new Promise<void>((resolve, reject) => {
    const fail = (err: unknown) => {
      tarStream.destroy();
      reject(err instanceof Error && !(err instanceof MetadataError) ? new MetadataError(archive, `cannot unpack: ${err.message}`) : err);
    };
    tarStream.on('error', fail);
    unpack.on('error', fail);
    unpack.on('end', () => resolve());
    tarStream.pipe(unpack as unknown as NodeJS.WritableStream);
  });
  if (fatal) throw fatal;
}

/** The entry node-tar warns about, when it says. */
function warnedEntry(data: Readonly<Record<string, unknown>> | undefined): string | undefined {
  const entry = data?.entry as { path?: unknown } | undefined;
  return typeof entry?.path === 'string' ? entry.path : undefined;
}

async function switchLink(layout: Layout, id: string): Promise<void> {
  const tmp = `${layout.bootloaders}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`;
  await unlink(tmp).catch(() => undefined);
  await symlink(join('bootloaders.d', id), tmp);
  try {
    await rename(tmp, layout.bootloaders);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const fh = await open(layout.dataDir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}

function slashes(p: string): string {
  return p.replaceAll('\\', '/');
}

function isAbsolute(p: string): boolean {
  return p.startsWith('/') || p.startsWith('\\') || /^[A-Za-z]:/.test(p);
}

function hasDotDot(p: string): boolean {
  return slashes(p).split('/').includes('..');
}

/** The steps of a relative path ("" and "." dropped, ".." kept). */
function parts(p: string): string[] {
  return slashes(p)
    .split('/')
    .filter((s) => s !== '' && s !== '.');
}
