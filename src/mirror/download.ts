import { mkdir, open, stat, unlink } from 'node:fs/promises';
import {
  AbortedError,
  ChecksumError,
  DiskFullError,
  RangeIgnored,
  SizeMismatchError,
  UpstreamHttpError,
  UpstreamNetworkError,
} from '../errors.js';
import type { BlobStore } from '../store/blobs.js';
import { rethrowDiskFull } from '../store/fsutil.js';
import type { Layout } from '../store/layout.js';
import { BodyWriter } from './body-writer.js';
import { failing, type UpstreamClient } from './client.js';
import type { HashPool, PooledHash } from './hash-pool.js';
import type { RateLimiter } from './ratelimit.js';
import { withRetries } from './retry.js';
import { recoverStriped, shouldStripe, stripedTransfer } from './stripes.js';

export interface DownloadRequest {
  readonly url: string;
  readonly sha256: string;
  readonly size: number;
}

export interface DownloadContext {
  readonly client: UpstreamClient;
  readonly layout: Layout;
  readonly store: BlobStore;
  readonly hashes: HashPool;
  readonly retries: number;
  readonly limiter?: RateLimiter;
  readonly signal?: AbortSignal;
  readonly retryBaseMs?: number;
  /** Bytes received from upstream (for progress and metrics). */
  readonly onBytes?: (n: number) => void;
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  readonly onChecksumFailure?: (err: ChecksumError | SizeMismatchError) => void;
  /** Connections one large file may use (download.stripes); 1 or unset: one stream. */
  readonly stripes?: number;
  /** Bytes per Range request of a striped file (download.stripeSize). */
  readonly stripeSize?: number;
}

export interface DownloadResult {
  readonly resumedFrom: number;
  readonly fetchedBytes: number;
}

/**
 * Fetches one file into the store: streamed to `partial/<sha>.part` while
 * hashing and counting, resumed with Range after a crash or a dropped
 * connection, adopted into the store only when size and sha256 match.
 */
export async function downloadBlob(req: DownloadRequest, ctx: DownloadContext): Promise<DownloadResult> {
  const partial = ctx.layout.partial(req.sha256);
  await mkdir(ctx.layout.partialDir, { recursive: true });
  let fetchedBytes = 0;
  let resumedFrom = -1;
  let mismatches = 0;
  for (;;) {
    try {
      const r = await withRetries(
        async () => {
          const got = await attempt(req, ctx, partial);
          fetchedBytes += got.fetched;
          if (resumedFrom < 0) resumedFrom = got.offset;
          return got;
        },
        { retries: ctx.retries, signal: ctx.signal, baseMs: ctx.retryBaseMs, onRetry: ctx.onRetry },
      );
      void r;
      return { resumedFrom: Math.max(0, resumedFrom), fetchedBytes };
    } catch (err) {
      if ((err instanceof ChecksumError || err instanceof SizeMismatchError) && mismatches === 0) {
        // A corrupt transfer may be a one-off (a bad proxy, a flipped bit): try once more from zero.
        mismatches++;
        ctx.onChecksumFailure?.(err);
        continue;
      }
      if (err instanceof ChecksumError || err instanceof SizeMismatchError) ctx.onChecksumFailure?.(err);
      throw err;
    }
  }
}

interface AttemptResult {
  offset: number;
  fetched: number;
}

async function attempt(req: DownloadRequest, ctx: DownloadContext, partial: string): Promise<AttemptResult> {
  if (ctx.signal?.aborted) throw new AbortedError();
  await recoverStriped(partial);
  let offset = await partialSize(partial);
  if (offset > req.size) {
    await unlink(partial);
    offset = 0;
  }
  if (offset === req.size) {
    const check = ctx.hashes.create();
    try {
      if (await completePartial(req, ctx, partial, check)) return { offset, fetched: 0 };
    } finally {
      check.drop();
    }
    offset = 0;
  }
  const stripes = ctx.stripes ?? 1;
  const stripeSize = ctx.stripeSize ?? Infinity;
  if (shouldStripe(req.size, offset, stripes, stripeSize)) {
    const striped = ctx.hashes.create();
    try {
      return await stripedTransfer(req, ctx, partial, offset, striped, stripes, stripeSize);
    } catch (err) {
      // A server without Range support answered the first part with the whole file: one stream, as before.
      if (!(err instanceof RangeIgnored)) throw err;
    } finally {
      striped.drop();
    }
  }
  const hash = ctx.hashes.create();
  try {
    return await transfer(req, ctx, partial, offset, hash);
  } finally {
    hash.drop();
  }
}

/**
 * A partial file of the full size: a crash came between the last write and
 * the rename. Adopt it if it hashes right (nothing to fetch); otherwise it
 * is garbage, and the download starts again from zero.
 */
async function completePartial(req: DownloadRequest, ctx: DownloadContext, partial: string, hash: PooledHash): Promise<boolean> {
  await hash.updateFromFile(partial, req.size);
  if ((await hash.digest()) === req.sha256) {
    const fh = await open(partial, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await ctx.store.adopt(partial, req.sha256);
    return true;
  }
  await unlink(partial).catch(() => undefined);
  return false;
}

async function transfer(req: DownloadRequest, ctx: DownloadContext, partial: string, offset: number, hash: PooledHash): Promise<AttemptResult> {
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (offset > 0) headers.range = `bytes=${offset}-`;
  let writer: BodyWriter | undefined;
  let refused: Error | undefined;
  try {
    await ctx.client.stream(req.url, headers, ctx.signal, (status, h) => {
      let start = 0;
      if (status === 206 && offset > 0) {
        const cr = parseContentRange(h['content-range']);
        if (!cr || cr.start !== offset || cr.end !== req.size - 1 || (cr.total !== undefined && cr.total !== req.size)) {
          // Only a 206 that continues exactly where we stopped is safe to append.
          refused = new UpstreamNetworkError(req.url, `bad Content-Range ${String(h['content-range'])} on resume; starting again from zero`);
          return failing(refused);
        }
        start = offset;
      } else if (status !== 200 && status !== 206) {
        return failing(new UpstreamNetworkError(req.url, `unexpected HTTP ${status}`));
      }
      writer = new BodyWriter({
        path: partial,
        start,
        limit: req.size - start,
        hash,
        onBytes: (n) => ctx.onBytes?.(n),
        limiter: ctx.limiter,
        signal: ctx.signal,
        // A 200 starts again from zero; a matching 206 continues what the file holds.
        prepare: start > 0 ? () => hash.updateFromFile(partial, start) : undefined,
      });
      return writer;
    });
  } catch (err) {
    // The writer may still be opening the file: unlinking before it closes would leave a new empty file behind.
    await (writer as BodyWriter | undefined)?.settled();
    if (refused) {
      await unlink(partial).catch(() => undefined);
      throw refused;
    }
    if (offset > 0 && err instanceof UpstreamHttpError && err.status === 416) {
      // The upstream file no longer reaches where ours stops (it changed under the same name): start over.
      await unlink(partial).catch(() => undefined);
      throw new UpstreamNetworkError(req.url, `the upstream cannot resume at byte ${offset} (HTTP 416); starting again from zero`);
    }
    if (err instanceof SizeMismatchError) {
      await unlink(partial).catch(() => undefined);
      throw new SizeMismatchError(req.url, req.size, (writer?.start ?? 0) + err.actual);
    }
    const e = rethrowDiskFull(err, partial);
    if (e instanceof DiskFullError) await unlink(partial).catch(() => undefined);
    throw e;
  }
  if (!writer) throw new UpstreamNetworkError(req.url, 'the upstream answered without a body');
  const total = writer.start + writer.received;
  const actual = await hash.digest();
  if (total !== req.size || actual !== req.sha256) {
    await unlink(partial).catch(() => undefined);
    if (total !== req.size) throw new SizeMismatchError(req.url, req.size, total);
    throw new ChecksumError(req.url, req.sha256, actual);
  }
  await ctx.store.adopt(partial, req.sha256);
  return { offset: writer.start, fetched: writer.received };
}

async function partialSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

export function parseContentRange(
  v: string | string[] | undefined,
): { start: number; end: number; total: number | undefined } | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(s?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}
