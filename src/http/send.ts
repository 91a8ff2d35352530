import type { FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { addBytes } from './access-log.js';
import { acceptsGzip, evaluatePreconditions } from './conditional.js';
import type { Entity } from './entity.js';
import { ifRangeAllows, parseRange } from './range.js';

/**
 * Reads per chunk from disk. A chunk is handed to the socket only once the
 * previous one left for the kernel, so what a response holds beyond the
 * kernel's socket buffer is at most two of them (64 KiB, or two large ones
 * within LARGE_CHUNK_BUDGET): a client that never reads costs its socket
 * buffer and that, not the file.
 */
export const STREAM_CHUNK = 32 * 1024;

/**
 * Large chunks move large files several times faster (a 32 KiB chunk is a
 * read and a write per 32 KiB: 16 downloads of 500 MB went 2.4 GB/s → 0.5
 * GB/s when every response used them). They are leased from one budget for
 * the whole server, so a flood of clients that never read holds at most
 * this much in large chunks, and everyone past it streams small ones.
 */
export const LARGE_CHUNK = 512 * 1024;
export const LARGE_CHUNK_BUDGET = 64 * 1024 * 1024;
let largeInUse = 0;

/** A pair of large chunks for one response when the budget allows, else undefined; release() gives it back. */
function leaseLarge(length: number): { size: number; release: () => void } | undefined {
  if (length <= 2 * STREAM_CHUNK || largeInUse + 2 * LARGE_CHUNK > LARGE_CHUNK_BUDGET) return undefined;
  largeInUse += 2 * LARGE_CHUNK;
  let released = false;
  return {
    size: LARGE_CHUNK,
    release: () => {
      if (released) return;
      released = true;
      largeInUse -= 2 * LARGE_CHUNK;
    },
  };
}

/** Writes a chunk and resolves once the socket took it for the kernel, or the response closed. */
export function writeFlushed(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('close', done);
      resolve();
    };
    res.on('close', done);
    res.write(chunk, done);
  });
}

/** A gzipped representation is another representation: it needs its own strong tag. */
export function gzipTag(etag: string): string {
  return `${etag.slice(0, -1)}-gzip"`;
}

/** Headers every answer for this representation carries, 304 included: validators and policy, as a flat list. */
export function commonHeaders(e: Entity, etag: string): string[] {
  const list = ['ETag', etag, 'Last-Modified', e.lastModified.toUTCString(), 'Cache-Control', e.cacheControl, 'Accept-Ranges', 'bytes', 'X-Content-Type-Options', 'nosniff'];
  if (e.negotiated) list.push('Vary', 'Accept-Encoding');
  return list;
}

/**
 * Answers a GET or HEAD for one entity: preconditions, Range, gzip, then the
 * body from memory or copied from the already open file (never re-opened by
 * path, so a publish in the middle cannot change the bytes). Resolves when the
 * response is over; the caller closes the file.
 */
/**
 * Status, Content-Range and Content-Length for a body of `size` bytes: 206
 * for a satisfiable single range (GET only, RFC 9110 §14.2; If-Range
 * respected), 200 for the whole. Answers 416 itself and returns undefined
 * when the range cannot be satisfied.
 */
export function applyRange(req: IncomingMessage, res: ServerResponse, size: number, etag: string, lastModified: Date): { start: number; end: number } | undefined {
  const header = req.method === 'GET' ? req.headers.range : undefined;
  res.statusCode = 200;
  let start = 0;
  let end = size - 1;
  if (header !== undefined && ifRangeAllows(req.headers['if-range'] as string | undefined, etag, lastModified)) {
    const r = parseRange(header, size);
    if (r.kind === 'unsatisfiable') {
      res.statusCode = 416;
      res.setHeader('Content-Range', `bytes */${size}`);
      res.setHeader('Content-Length', 0);
      res.removeHeader('Content-Type');
      res.end();
      return undefined;
    }
    if (r.kind === 'partial') {
      ({ start, end } = r);
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
    }
  }
  res.setHeader('Content-Length', end - start + 1);
  return { start, end };
}

export async function sendEntity(req: IncomingMessage, res: ServerResponse, e: Entity): Promise<void> {
  // RFC 9110 §14.2: Range is defined for GET only; a HEAD answers as the matching full GET would.
  const rangeHeader = req.method === 'GET' ? req.headers.range : undefined;
  const gzip = e.gzip !== undefined && rangeHeader === undefined && acceptsGzip(req.headers['accept-encoding']) ? e.gzip : undefined;
  const etag = gzip ? gzipTag(e.etag) : e.etag;

  const common = commonHeaders(e, etag);
  for (let i = 0; i < common.length; i += 2) res.setHeader(common[i]!, common[i + 1]!);

  const pre = evaluatePreconditions(req.headers, { etag, lastModified: e.lastModified });
  if (pre === 'not-modified') {
    res.statusCode = 304;
    res.end();
    return;
  }
  if (pre === 'failed') {
    res.statusCode = 412;
    res.setHeader('Content-Length', 0);
    res.end();
    return;
  }

  res.setHeader('Content-Type', e.contentType);
  if (gzip) {
    res.statusCode = 200;
    res.setHeader('Content-Encoding', 'gzip');
    res.setHeader('Content-Length', gzip.length);
    return endWith(req, res, gzip);
  }

  const span = applyRange(req, res, e.size, e.etag, e.lastModified);
  if (span === undefined) return;
  const { start, end } = span;
  const length = end - start + 1;

  if (e.body.kind === 'buffer') {
    return endWith(req, res, start === 0 && length === e.body.data.length ? e.body.data : e.body.data.subarray(start, end + 1));
  }
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return;
  }
  try {
    await copyRange(e.body.file.handle, start, end, res);
    res.end();
  } catch {
    // The client went away, or the read failed mid-body: cutting the connection is the only honest signal.
    res.destroy();
  }
}

/**
 * Copies [start, end] from the open handle to the response through two
 * buffers used in turn: one is read into while the other is being written,
 * and a buffer is reused only once the socket has taken it. Memory per
 * download is fixed (two chunks) and nothing is left for the GC, unlike
 * a read stream that allocates a fresh chunk per read.
 */
async function copyRange(handle: FileHandle, start: number, end: number, res: ServerResponse): Promise<void> {
  const lease = leaseLarge(end - start + 1);
  try {
    await copyWith(lease?.size ?? STREAM_CHUNK, handle, start, end, res);
  } finally {
    lease?.release();
  }
}

async function copyWith(chunk: number, handle: FileHandle, start: number, end: number, res: ServerResponse): Promise<void> {
  const size = Math.min(chunk, end - start + 1);
  const buffers = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)];
  const written: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  let gone: (err: Error) => void = () => undefined;
  const closed = new Promise<never>((_, reject) => (gone = reject));
  closed.catch(() => undefined);
  const onClose = () => gone(new Error('the client closed the connection'));
  res.once('close', onClose);
  try {
    let i = 0;
    for (let pos = start; pos <= end; i ^= 1) {
      await Promise.race([written[i], closed]);
      const buf = buffers[i]!;
      const { bytesRead } = await handle.read(buf, 0, Math.min(size, end - pos + 1), pos);
      if (bytesRead === 0) throw new Error('the file ended before its size');
      if (res.destroyed) throw new Error('the client closed the connection');
      written[i] = new Promise<void>((resolve, reject) => {
        res.write(bytesRead === size ? buf : buf.subarray(0, bytesRead), (err) => (err ? reject(err) : resolve()));
      });
      written[i]!.catch(() => undefined);
      addBytes(res, bytesRead);
      pos += bytesRead;
    }
    await Promise.race([Promise.all(written), closed]);
  } finally {
    res.off('close', onClose);
  }
}

function endWith(req: IncomingMessage, res: ServerResponse, data: Buffer): void {
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  addBytes(res, data.length);
  res.end(data);
}
