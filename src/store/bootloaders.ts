import { mkdir, readdir, readlink, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { errnoOf, MetadataError } from '../errors.js';
import { childLogger, type Logger } from '../log.js';
import { removeEscapingLinks } from './archive-links.js';
import { DEFAULT_ARCHIVE_LIMITS, unpackArchive, type ArchiveLimits, type RefusedEntry } from './archive-unpack.js';
import type { Layout } from './layout.js';
import { replaceSymlink } from './fsutil.js';
import { inSlots } from './slots.js';
import type { SnapshotManifest } from './manifest.js';

export type { RefusedEntry } from './archive-unpack.js';

/**
 * After each publish, the newest bootloader archives are unpacked to
 * bootloaders.d/<snapshot id>/<bootloader-type>/<arch>/ and `bootloaders` is
 * switched to it, so TFTP and HTTP can serve bootx64.efi & co by bare name.
 * The folder switched away from stays until the next switch: a server that
 * read the link a moment before (Resolver trusts it for linkTtlMs) still
 * finds its files. An open download keeps its inode when a folder goes.
 *
 * Every link left in a <type>/<arch> folder resolves inside that folder, as
 * the kernel resolves it (a link is followed before a ".." after it), so the
 * tree can be served by anything that follows links.
 */

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

const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

export interface UnpackBootloadersOptions {
  /** Budgets per archive; one archive over any of them refuses the whole set (the previous one keeps serving). */
  readonly limits?: ArchiveLimits;
  readonly signal?: AbortSignal;
  /**
   * Asked just before the link is switched: false leaves the link alone (a
   * repair running in the background must not switch back over a newer publish).
   */
  readonly beforeSwitch?: () => Promise<boolean>;
}

export async function unpackBootloaders(
  layout: Layout,
  manifest: SnapshotManifest,
  logger: Logger,
  options: UnpackBootloadersOptions = {},
): Promise<UnpackedBootloaders> {
  const limits = options.limits ?? DEFAULT_ARCHIVE_LIMITS;
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
      // Each folder is its own archives, links and destination: unpacked side by side, each
      // archive in a child process; a folder's own archives stay in order (a later one may overwrite).
      // Products naming the same <type>/<arch> share a folder: those go one after the other, as listed.
      const ctx = { layout, manifest, tmp, limits, log, onRefused, signal: options.signal };
      const unpacked = await inSlots(sameFolderGroups(manifest.bootloaders), FOLDERS_AT_ONCE, async (group) => {
        const done: (UnpackedFolder | undefined)[] = [];
        for (const b of group) done.push(await unpackFolder(b, ctx));
        return done;
      });
      for (const f of unpacked.flat()) if (f) folders.push(f);
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
  if (options.beforeSwitch && !(await options.beforeSwitch())) {
    log.info('bootloaders unpacked but not switched to: another snapshot was published meanwhile');
    return { id: manifest.id, dir, folders, refused, reused, removed: [] };
  }
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

/** Bootloader folders unpacked at once: each is an xz child process and a tar parse. */
const FOLDERS_AT_ONCE = 3;

interface FolderContext {
  readonly layout: Layout;
  readonly manifest: SnapshotManifest;
  readonly tmp: string;
  readonly limits: ArchiveLimits;
  readonly log: Logger;
  readonly onRefused: (r: RefusedEntry) => void;
  readonly signal: AbortSignal | undefined;
}

type BootloaderEntry = SnapshotManifest['bootloaders'][number];

/** The bootloader products grouped by the folder they unpack into, in the order listed. */
function sameFolderGroups(list: readonly BootloaderEntry[]): BootloaderEntry[][] {
  const groups = new Map<string, BootloaderEntry[]>();
  for (const b of list) {
    const key = `${b.bootloaderType}\u0000${b.arch}`;
    const group = groups.get(key);
    if (group) group.push(b);
    else groups.set(key, [b]);
  }
  return [...groups.values()];
}

/** One bootloader product's archives into <tmp>/<type>/<arch>, in the manifest's order. */
async function unpackFolder(b: BootloaderEntry, ctx: FolderContext): Promise<UnpackedFolder | undefined> {
  const { manifest, log } = ctx;
  if (!SEGMENT_RE.test(b.bootloaderType) || !SEGMENT_RE.test(b.arch)) {
    log.warn({ product: b.productId, bootloaderType: b.bootloaderType, arch: b.arch }, 'skipped a bootloader product with an unusable type or arch');
    return undefined;
  }
  const dest = join(ctx.tmp, b.bootloaderType, b.arch);
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
    await unpackArchive({ blob: ctx.layout.blob(file.sha256), archive: path, productId: b.productId, dest, links, onRefused: ctx.onRefused, limits: ctx.limits, signal: ctx.signal });
    archives.push(path);
  }
  await removeEscapingLinks(dest, (entry) => links.get(entry) ?? '(unpacked)', ctx.onRefused);
  return { productId: b.productId, version: b.version, bootloaderType: b.bootloaderType, arch: b.arch, archives };
}

/** `bootloaders` → `bootloaders.d/<id>`, in one rename. */
function switchLink(layout: Layout, id: string): Promise<void> {
  return replaceSymlink(layout.bootloaders, join('bootloaders.d', id));
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    throw err;
  }
}
