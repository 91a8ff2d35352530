import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { errnoOf, FolderReadError, MetadataTooLargeError } from '../errors.js';
import type { DocumentState } from '../store/state.js';
import { MAX_METADATA_BYTES, type FetchedDocument } from './metadata.js';

/** A source whose root is a folder (an export disk), not an HTTP server. */
export function isFolderSource(url: string): boolean {
  return url.startsWith('file:');
}

/** The file a folder source's URL names. */
export function folderFile(url: string): string {
  return fileURLToPath(url);
}

/** Why a file on the disk could not be read, in words an operator can act on. */
export function folderReadError(file: string, err: unknown): FolderReadError {
  const code = errnoOf(err);
  const reason =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'it is a folder, not a file'
          : code === 'ENOTDIR'
            ? 'a folder on its path is a file'
            : code === 'EIO'
              ? 'input/output error (a damaged disk?)'
              : err instanceof Error
                ? err.message
                : String(err);
  return new FolderReadError(file, reason, { cause: err });
}

/**
 * Stamp of a file's identity and last change: the folder's counterpart of
 * an ETag. Any rewrite moves mtime or replaces the inode; documents whose
 * stamp is the one accepted last time are not read again.
 */
function stampOf(st: { ino: number; size: number; mtimeMs: number; dev: number }): string {
  return `file:${st.dev}:${st.ino}:${st.size}:${Math.round(st.mtimeMs * 1000)}`;
}

/**
 * How a file on the disk is opened: read-only, and without waiting on a
 * FIFO or device that has no writer; the caller then refuses anything that is
 * not a regular file.
 */
export const READ_NONBLOCK = constants.O_RDONLY | constants.O_NONBLOCK;

/** Reads one metadata document from a folder source: opened read-only, size-capped, skipped when unchanged. */
export async function readFolderDocument(
  url: string,
  opts: { previous?: DocumentState; maxBytes?: number },
): Promise<FetchedDocument> {
  const file = folderFile(url);
  const max = opts.maxBytes ?? MAX_METADATA_BYTES;
  let fh;
  try {
    // Non-blocking: opening a FIFO with no writer would otherwise hold a libuv thread forever.
    fh = await open(file, READ_NONBLOCK);
  } catch (err) {
    throw folderReadError(file, err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new FolderReadError(file, 'not a regular file');
    const stamp = stampOf(st);
    if (opts.previous?.textSha256 && opts.previous.etag === stamp) return { changed: false };
    if (st.size > max) throw new MetadataTooLargeError(file, max);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < st.size) {
      const { bytesRead } = await fh.read(buf, got, st.size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== st.size) throw new FolderReadError(file, `it shrank while being read (${got} of ${st.size} bytes)`);
    return { changed: true, text: buf.toString('utf8'), etag: stamp };
  } catch (err) {
    if (err instanceof FolderReadError || err instanceof MetadataTooLargeError) throw err;
    throw folderReadError(file, err);
  } finally {
    await fh.close();
  }
}
