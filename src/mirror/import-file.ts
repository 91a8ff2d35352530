import { constants, createReadStream, createWriteStream, type Stats } from 'node:fs';
import { copyFile, link, mkdir, open, stat, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortedError, ChecksumError, errnoOf, FolderReadError, ItemMissingError, SizeMismatchError } from '../errors.js';
import type { BlobStore } from '../store/blobs.js';
import { rethrowDiskFull } from '../store/fsutil.js';
import type { Layout } from '../store/layout.js';
import { folderFile, folderReadError, READ_NONBLOCK } from './folder.js';

export interface ImportRequest {
  readonly url: string;
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
}

export interface ImportContext {
  readonly layout: Layout;
  readonly store: BlobStore;
  readonly signal?: AbortSignal;
  /** Bytes brought in (for progress and metrics). */
  readonly onBytes?: (n: number) => void;
}

export type ImportMethod = 'link' | 'reflink' | 'copy';

export interface ImportResult {
  readonly method: ImportMethod;
  readonly resumedFrom: 0;
  readonly fetchedBytes: number;
}

const CHUNK = 1 << 20;

/**
 * Brings one item file from a folder source into the store, without a second
 * copy where the filesystem allows:
 *  - a hard link, only for a file this user owns that no one else may write
 *    (the store's blob IS that file; adopt makes it read-only, on the disk too);
 *  - else a reflink (copy-on-write clone: the source may change, the clone does not);
 *  - else a streamed copy.
 * Whatever the way in, the bytes are hashed where they now lie and adopted
 * only when size and sha256 match. The source is only ever opened for reading.
 */
export async function importBlob(req: ImportRequest, ctx: ImportContext): Promise<ImportResult> {
  if (ctx.signal?.aborted) throw new AbortedError();
  const src = folderFile(req.url);
  const st = await stat(src).catch((err: unknown) => {
    throw errnoOf(err) === 'ENOENT' ? new ItemMissingError(req.path, src) : folderReadError(src, err);
  });
  if (!st.isFile()) throw folderReadError(src, new Error('not a regular file'));
  // A truncated or grown file on the disk: refused before a byte is copied.
  if (st.size !== req.size) throw new SizeMismatchError(src, req.size, st.size);
  const partial = ctx.layout.partial(req.sha256);
  await mkdir(ctx.layout.partialDir, { recursive: true });
  await unlink(partial).catch(() => undefined);
  let method: ImportMethod | undefined;
  try {
    method = await placeWithoutCopy(src, partial, st);
    let actual: { sha256: string; size: number };
    if (method) {
      actual = await hashFile(partial, req.size, ctx).catch((err: unknown) => {
        // A link is the disk's file itself: what fails to read it is the disk's trouble.
        throw method === 'link' && !(err instanceof AbortedError) ? folderReadError(src, err) : err;
      });
    } else {
      method = 'copy';
      actual = await copyHashed(src, partial, req.size, ctx);
    }
    if (actual.size !== req.size) throw new SizeMismatchError(src, req.size, actual.size);
    if (actual.sha256 !== req.sha256) throw new ChecksumError(src, req.sha256, actual.sha256);
    if (method !== 'link') await fsyncFile(partial);
    await ctx.store.adopt(partial, req.sha256);
    return { method, resumedFrom: 0, fetchedBytes: req.size };
  } catch (err) {
    // Only our own name goes: for a link, the disk's file stays as it was.
    await unlink(partial).catch(() => undefined);
    throw rethrowDiskFull(err, ctx.layout.partialDir);
  }
}

/**
 * Whether the store may take a file's own inode: only one this user owns
 * and no one else may write. Adopting it makes it read-only (0444) on the
 * disk too; a file another user or group could still write in place would
 * change a blob the store has already verified.
 */
export function mayHardLink(st: Stats): boolean {
  return st.uid === process.getuid?.() && (st.mode & 0o022) === 0;
}

/**
 * Puts `src` at `dest` without copying its bytes where the rules and the
 * filesystem allow: a hard link (mayHardLink), else a reflink. undefined
 * when neither worked and the caller must copy.
 */
export async function placeWithoutCopy(src: string, dest: string, st: Stats): Promise<'link' | 'reflink' | undefined> {
  if (mayHardLink(st) && (await tryLink(src, dest))) return 'link';
  if (await tryReflink(src, dest)) return 'reflink';
  return undefined;
}

async function tryLink(src: string, dest: string): Promise<boolean> {
  try {
    await link(src, dest);
    return true;
  } catch {
    // Another filesystem (EXDEV), protected_hardlinks (EPERM), a read-only mount: fall through.
    return false;
  }
}

async function tryReflink(src: string, dest: string): Promise<boolean> {
  try {
    await copyFile(src, dest, constants.COPYFILE_FICLONE_FORCE | constants.COPYFILE_EXCL);
    return true;
  } catch {
    await unlink(dest).catch(() => undefined);
    return false;
  }
}

async function fsyncFile(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A transform that hashes, counts and reports progress. */
function hasher(ctx: ImportContext) {
  const hash = createHash('sha256');
  let size = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (ctx.signal?.aborted) return done(new AbortedError());
      size += chunk.length;
      hash.update(chunk);
      ctx.onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  return { stream, result: () => ({ sha256: hash.digest('hex'), size }) };
}

/** Hashes the bytes a link or clone put at `file`; reads one byte past `size` to see a longer file. */
async function hashFile(file: string, size: number, ctx: ImportContext): Promise<{ sha256: string; size: number }> {
  const h = hasher(ctx);
  await pipeline(createReadStream(file, { highWaterMark: CHUNK, end: size }), h.stream, async (source: AsyncIterable<Buffer>) => {
    for await (const _ of source) void _;
  });
  return h.result();
}

/** The fallback: read, hash and write in one pass, the written file fsynced by the caller. */
async function copyHashed(src: string, dest: string, size: number, ctx: ImportContext): Promise<{ sha256: string; size: number }> {
  const h = hasher(ctx);
  // Checked by fstat on what was opened: the path may have been swapped for a FIFO since the stat.
  const fh = await open(src, READ_NONBLOCK).catch((err: unknown) => {
    throw folderReadError(src, err);
  });
  try {
    if (!(await fh.stat()).isFile()) throw folderReadError(src, new Error('not a regular file'));
    await pipeline(fh.createReadStream({ highWaterMark: CHUNK, end: size }), h.stream, createWriteStream(dest, { flags: 'wx', mode: 0o644 }));
  } catch (err) {
    if (err instanceof FolderReadError) throw err;
    if (err instanceof AbortedError) throw err;
    const code = errnoOf(err);
    if (code === 'ENOSPC' || code === 'EDQUOT') throw err;
    // A read error is the disk's; a write error (other than space) is ours and stays as it is.
    if ((err as { syscall?: string }).syscall === 'read' || (err as { path?: string }).path === src) throw folderReadError(src, err);
    throw err;
  } finally {
    await fh.close().catch(() => undefined);
  }
  return h.result();
}
