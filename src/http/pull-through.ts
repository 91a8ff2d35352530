import { once } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errnoOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { PullDownload, PullFile, PullThroughSource } from '../mirror/pull-through.js';
import { classify } from '../store/routes.js';
import { safeRelativePath } from '../store/safe-path.js';
import { type OpenedFile } from '../store/resolver.js';
import { addBytes } from './access-log.js';
import { evaluatePreconditions } from './conditional.js';
import { CACHE_IMMUTABLE, CACHE_REVALIDATE, contentTypeOf, quoteTag } from './entity.js';
import { sendError } from './errors.js';
import { rawPath } from './handler.js';
import { applyRange, sendEntity, STREAM_CHUNK, writeFlushed } from './send.js';

export type { PullThroughSource } from '../mirror/pull-through.js';

/** What the file handler calls for an item the snapshot lists but does not hold. */
export type PullThrough = (file: PullFile, req: IncomingMessage, res: ServerResponse) => Promise<void>;

/**
 * Answers a request for an on-demand item (a manifest file with
 * `held: false`) from the mirror's shared download: the stored blob once it
 * is there, otherwise the bytes as they arrive in the partial file. HEAD and
 * preconditions are answered from the manifest and never start a download.
 * `file.path` is the item path relative to the tree root.
 */
export function createPullThroughHandler(source: PullThroughSource, logger: Logger): PullThrough {
  return async (file: PullFile, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // Pulled through but not yet republished: the same answers as a held item (Range, 304, validators).
    const blob = await source.openStored(file);
    if (blob) return sendBlob(blob, file, req, res);
    // A rack probing sizes, or revalidating what it has, would otherwise pull every image.
    if (!pendingHeaders(req, res, quoteTag(file.sha256))) return;
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'Content-Type': contentTypeOf('item', file.path), 'Content-Length': String(file.size) }).end();
      return;
    }
    let dl: PullDownload;
    try {
      dl = await source.download(file);
    } catch (err) {
      return sendError(req, res, err, logger);
    }
    return stream(source, dl, req, res, logger);
  };
}

/**
 * A GET while the first download runs, read back from the partial file.
 *
 * Range is honoured from the bytes as they arrive (206), not held back
 * until the blob is stored: a rack or `curl -C` resuming a cut transfer of
 * a multi-GB image would otherwise sit idle for the whole remaining
 * download (and time out), or get a 200 it cannot resume from. As for the
 * whole file, the last byte of the answer waits for the verdict, so a range
 * that stops early completes only once the file is verified; a resume
 * (`bytes=N-`) ends with the file, like a plain GET.
 */
async function stream(source: PullThroughSource, dl: PullDownload, req: IncomingMessage, res: ServerResponse, logger: Logger): Promise<void> {
  const file = dl.file;
  let fh: FileHandle;
  try {
    fh = await open(dl.partial, 'r');
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw err;
    // adopt() renamed the partial into the store; `finished` may not be set yet (the directory fsync).
    const blob = await source.openStored(file);
    if (blob) return sendBlob(blob, file, req, res);
    // Or the download failed and its partial was removed.
    if (dl.failed) return sendError(req, res, dl.failed, logger);
    throw err;
  }
  try {
    res.setHeader('Content-Type', contentTypeOf('item', file.path));
    const span = applyRange(req, res, file.size, quoteTag(file.sha256), NO_DATE);
    if (span === undefined) return;
    await copyGrowing(dl, fh, span.start, span.end + 1, res);
  } finally {
    await fh.close();
  }
}

/** Copies [start, stop) of a file still being written, as its bytes arrive; the last byte waits for the verdict. */
async function copyGrowing(dl: PullDownload, fh: FileHandle, start: number, stop: number, res: ServerResponse): Promise<void> {
  res.writeHead(res.statusCode);
  let pos = start;
  // The client may have gone while we waited for the download or the open: 'close' will not come again.
  let closed = res.destroyed;
  const onClose = () => {
    closed = true;
    dl.emit('progress');
  };
  res.once('close', onClose);
  // One buffer, reused once the socket took it: per-response memory stays at STREAM_CHUNK.
  const buf = Buffer.allocUnsafeSlow(STREAM_CHUNK);
  try {
    while (pos < stop && !closed) {
      // A client never sees a clean end of wrong bytes.
      const available = dl.finished ? stop : Math.min(dl.written, stop - 1);
      if (pos >= available) {
        if (dl.failed) break;
        await once(dl, 'progress');
        continue;
      }
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, available - pos), pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      addBytes(res, bytesRead);
      await writeFlushed(res, buf.subarray(0, bytesRead));
    }
  } finally {
    res.off('close', onClose);
  }
  if (closed) return;
  if (dl.failed || pos < stop) res.destroy();
  else res.end();
}

/** Through sendEntity, as a held item is served: preconditions, Range, HEAD, access-log bytes. */
async function sendBlob(blob: OpenedFile, file: PullFile, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    await sendEntity(req, res, {
      size: blob.size,
      etag: quoteTag(file.sha256),
      lastModified: blob.mtime,
      contentType: contentTypeOf('item', file.path),
      cacheControl: cacheControlOf(req),
      negotiated: false,
      body: { kind: 'file', file: blob },
    });
  } finally {
    await blob.close();
  }
}

/** If-Range with a date never matches before the file is stored: it has no Last-Modified yet. */
const NO_DATE = new Date(NaN);

/**
 * As for a held item: an item path or a full sha256 always names these bytes;
 * a short hash prefix may name another file after a publish.
 */
function cacheControlOf(req: IncomingMessage): string {
  const raw = rawPath(req.url ?? '');
  const safe = raw === undefined ? undefined : safeRelativePath(raw, { decode: true });
  const route = safe === undefined ? undefined : classify(safe);
  return route?.kind === 'hash' && route.prefix.length < 64 ? CACHE_REVALIDATE : CACHE_IMMUTABLE;
}

/**
 * Validators and policy for an answer about an item not stored yet, then its
 * preconditions; false when that answer (304, 412) is sent. A HEAD answers as
 * the full GET would (Range ignored). The strong ETag (the sha256) is known
 * before any byte is; Last-Modified is not, so If-Modified-Since and
 * If-Unmodified-Since are ignored (RFC 9110 §13.1.3, §13.1.4). no-cache: a
 * streamed answer may still be cut if the upstream's bytes turn out wrong.
 */
function pendingHeaders(req: IncomingMessage, res: ServerResponse, etag: string): boolean {
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', CACHE_REVALIDATE);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  const pre = evaluatePreconditions({ 'if-match': req.headers['if-match'], 'if-none-match': req.headers['if-none-match'] }, { etag, lastModified: NO_DATE });
  if (pre === 'not-modified') {
    res.writeHead(304).end();
    return false;
  }
  if (pre === 'failed') {
    res.writeHead(412, { 'Content-Length': '0' }).end();
    return false;
  }
  return true;
}
