import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, symlink, unlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Unpack, type ReadEntry } from 'tar';
import xz from 'xz-decompress';
import { errnoOf, MetadataError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Layout } from './layout.js';
import type { SnapshotManifest } from './manifest.js';

/**
 * After each publish, the newest bootloader archives are unpacked to
 * bootloaders.d/<snapshot id>/<bootloader-type>/<arch>/ and `bootloaders` is
 * switched to it, so TFTP and HTTP can serve bootx64.efi & co by bare name.
 * An open download of an old file keeps its inode when the old folder goes.
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
  /** Old unpacked folders removed. */
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
  const log = logger.child({ component: 'bootloaders', snapshot: manifest.id });
  if (!SEGMENT_RE.test(manifest.id)) throw new MetadataError(layout.manifest(manifest.id), `unusable snapshot id "${manifest.id}"`);
  const store = layout.bootloadersStore;
  const dir = join(store, manifest.id);
  await mkdir(store, { recursive: true });

  const folders: UnpackedFolder[] = [];
  const refused: RefusedEntry[] = [];
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
          await unpackArchive(layout.blob(file.sha256), path, dest, (r) => {
            refused.push(r);
            log.warn({ archive: r.archive, entry: r.entry, reason: r.reason }, 'refused a bootloader archive entry');
          });
          archives.push(path);
        }
        folders.push({ productId: b.productId, version: b.version, bootloaderType: b.bootloaderType, arch: b.arch, archives });
      }
      await rename(tmp, dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  await switchLink(layout, manifest.id);
  const removed: string[] = [];
  for (const name of await readdir(store)) {
    if (name === manifest.id) continue;
    await rm(join(store, name), { recursive: true, force: true });
    removed.push(name);
  }
  log.info({ folders: folders.length, refused: refused.length, reused, removed }, 'bootloaders unpacked and switched');
  return { id: manifest.id, dir, folders, refused, reused, removed };
}

/** Why a tar entry may not be unpacked into its folder, or undefined when it may. */
export function refuseReason(entry: { path: string; type: string; linkpath?: string; size?: number }): string | undefined {
  if (!ALLOWED_TYPES.has(entry.type)) return `entry type ${entry.type} is not unpacked`;
  if (isAbsolute(entry.path)) return 'absolute path';
  if (hasDotDot(entry.path)) return 'path contains ".."';
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
  }
  return undefined;
}

async function unpackArchive(blob: string, archive: string, dest: string, onRefused: (r: RefusedEntry) => void): Promise<void> {
  let total = 0;
  let fatal: Error | undefined;
  const unpack = new Unpack({
    cwd: dest,
    strict: false,
    preserveOwner: false,
    preservePaths: false,
    filter: (path: string, entry) => {
      const e = entry as ReadEntry;
      const reason = refuseReason({ path, type: e.type, linkpath: e.linkpath, size: e.size });
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
    onwarn: (code: string, message: string) => {
      // Entry-level complaints of node-tar itself are refusals too; a broken archive is fatal.
      if (code === 'TAR_BAD_ARCHIVE' || code === 'TAR_ABORT') fatal ??= new MetadataError(archive, `${message}; the archive is damaged`);
      else onRefused({ archive, entry: '(tar)', reason: `${code}: ${message}` });
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
