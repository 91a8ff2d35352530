import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { constants } from 'node:fs';
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import { ChecksumError, errnoOf, MirrorError, SizeMismatchError } from '../errors.js';
import type { BlobStore } from '../store/blobs.js';
import type { Layout } from '../store/layout.js';
import type { ManifestFile } from '../store/manifest.js';
import { classify, safeRelativePath, type OpenedFile } from '../store/namespace.js';
import { translateError, UpstreamClient } from './client.js';
import { joinUrl } from './url.js';
import { addBytes } from '../http/access-log.js';
import { evaluatePreconditions } from '../http/conditional.js';
import { drained } from '../http/drained.js';
import { CACHE_IMMUTABLE, CACHE_REVALIDATE, contentTypeOf, quoteTag } from '../http/entity.js';
import { rawPath } from '../http/handler.js';
import { applyRange, sendEntity } from '../http/send.js';

export class UpstreamUnavailableError extends MirrorError {
  readonly code = 'MM_UPSTREAM_UNAVAILABLE';
}

type File = ManifestFile & { readonly path: string };

const READ_CHUNK = 256 * 1024;

/**
 * One upstream transfer of an on-demand item, shared by every client that
 * asks for it meanwhile. Bytes go to the partial file first; clients read
 * them back from there, each at its own pace, so a slow client never slows
 * the download nor holds it in memory. The file enters the store only when
 * size and sha256 match; on a mismatch every client's connection is cut.
 */
class SharedDownload extends EventEmitter {
  written = 0;
  failed: Error | undefined;
  finished = false;
  readonly ready: Promise<void>;
  private fh: FileHandle | undefined;

  constructor(
    readonly file: File,
    private readonly url: string,
    private readonly deps: PullThroughDeps,
    private readonly client: UpstreamClient,
  ) {
    super();
    this.setMaxListeners(0);
    this.ready = this.run();
    this.ready.catch(() => undefined);
  }

  get partial(): string {
    return this.deps.layout.partial(this.file.sha256);
  }

  /** Resolves once the upstream answered and the partial file exists; the body then flows in the background. */
  private async run(): Promise<void> {
    const { layout } = this.deps;
    await mkdir(layout.partialDir, { recursive: true });
    // A leftover partial from an earlier failure: start clean, clients read from byte 0.
    await unlink(this.partial).catch(() => undefined);
    let res;
    try {
      res = await this.client.get(this.url, { 'accept-encoding': 'identity' });
    } catch (err) {
      const e = translateError(err, this.url) as Error;
      this.fail(new UpstreamUnavailableError(`${this.file.path} is not held yet and the upstream cannot be reached (${e.message}); it will be fetched when the upstream is back`));
      throw this.failed;
    }
    this.fh = await open(this.partial, 'w', 0o644);
    void this.pump(res.body);
  }

  private async pump(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<void> {
    const hash = createHash('sha256');
    try {
      for await (const chunk of body) {
        if (this.written + chunk.length > this.file.size) {
          throw new SizeMismatchError(this.url, this.file.size, this.written + chunk.length);
        }
        hash.update(chunk);
        await this.fh!.write(chunk, 0, chunk.length, this.written);
        this.written += chunk.length;
        this.emit('progress');
      }
      if (this.written !== this.file.size) throw new SizeMismatchError(this.url, this.file.size, this.written);
      const actual = hash.digest('hex');
      if (actual !== this.file.sha256) throw new ChecksumError(this.url, this.file.sha256, actual);
      await this.fh!.sync();
      await this.fh!.close();
      this.fh = undefined;
      await this.deps.store.adopt(this.partial, this.file.sha256);
      this.finished = true;
      this.deps.logger.info({ path: this.file.path, bytes: this.written }, 'pulled through and stored');
      this.emit('progress');
    } catch (err) {
      body.destroy();
      this.fail(translateError(err, this.url) as Error);
      await this.fh?.close().catch(() => undefined);
      await unlink(this.partial).catch(() => undefined);
    }
  }

  private fail(err: Error): void {
    this.failed = err;
    this.deps.logger.error({ path: this.file.path, code: (err as MirrorError).code }, `pull-through failed: ${err.message}`);
    this.emit('progress');
  }
}

export interface PullThroughDeps {
  readonly layout: Layout;
  readonly store: BlobStore;
  readonly logger: Logger;
  /** A getter: SIGHUP may swap the configuration. */
  readonly config: () => Config;
  readonly onBytes?: (source: string, bytes: number) => void;
}

export class PullThroughService {
  private readonly inflight = new Map<string, SharedDownload>();
  private client: UpstreamClient | undefined;

  constructor(private readonly deps: PullThroughDeps) {}

  /** The HTTP layer's hook (see src/http/pull-through.ts). */
  readonly handler = async (file: File, req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // Pulled through but not yet republished: the same answers as a held item (Range, 304, validators).
    const blob = await this.openBlob(file);
    if (blob) return this.sendBlob(blob, file, req, res);
    const source = this.deps.config().sources.find((s) => s.name === file.source);
    if (!source) {
      return reply(req, res, 503, `${file.path} is not held and its source "${file.source}" is no longer configured`);
    }
    // Preconditions and HEAD need no byte: answered from the manifest (size, sha256), they never start a
    // download (a rack probing sizes, or revalidating what it has, would otherwise pull every image).
    if (!pendingHeaders(req, res, quoteTag(file.sha256))) return;
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'Content-Type': contentTypeOf('item', file.path), 'Content-Length': String(file.size) }).end();
      return;
    }
    let dl = this.inflight.get(file.sha256);
    if (!dl) {
      const cfg = this.deps.config().download;
      this.client ??= new UpstreamClient({ connectTimeout: cfg.connectTimeout, idleTimeout: cfg.idleTimeout, connections: cfg.concurrency + 2, proxy: cfg.proxy });
      dl = new SharedDownload(file, joinUrl(source.url, file.path), this.deps, this.client);
      this.inflight.set(file.sha256, dl);
      const done = () => {
        if (dl!.finished || dl!.failed) this.inflight.delete(file.sha256);
        else return;
        dl!.off('progress', done);
      };
      dl.on('progress', done);
      let last = 0;
      dl.on('progress', () => {
        this.deps.onBytes?.(file.source, dl!.written - last);
        last = dl!.written;
      });
    }
    try {
      await dl.ready;
    } catch (err) {
      return reply(req, res, 503, (err as Error).message);
    }
    return this.stream(dl, req, res);
  };

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
  private async stream(dl: SharedDownload, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const file = dl.file;
    let fh: FileHandle;
    try {
      fh = await open(dl.partial, 'r');
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw err;
      // adopt() renamed the partial into the store; `finished` may not be set yet (the directory fsync).
      const blob = await this.openBlob(file);
      if (blob) return this.sendBlob(blob, file, req, res);
      // Or the download failed and its partial was removed.
      if (dl.failed) return reply(req, res, 503, `${file.path} is not held yet and its download failed (${dl.failed.message}); the next request tries again`);
      throw err;
    }
    try {
      res.setHeader('Content-Type', contentTypeOf('item', file.path));
      const span = applyRange(req, res, file.size, quoteTag(file.sha256), NO_DATE);
      if (span === undefined) return;
      const { start, end } = span;
      res.writeHead(res.statusCode);
      const stop = end + 1;
      let pos = start;
      // The client may have gone while we waited for the download or the open: 'close' will not come again.
      let closed = res.destroyed;
      res.once('close', () => {
        closed = true;
        dl.emit('progress');
      });
      while (pos < stop && !closed) {
        // The last byte waits for the verdict: a client never sees a clean end of wrong bytes.
        const available = dl.finished ? stop : Math.min(dl.written, stop - 1);
        if (pos >= available) {
          if (dl.failed) break;
          await once(dl, 'progress');
          continue;
        }
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, available - pos));
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        addBytes(res, bytesRead);
        if (!res.write(buf.subarray(0, bytesRead))) await drained(res);
      }
      if (closed) return;
      if (dl.failed || pos < stop) res.destroy(dl.failed);
      else res.end();
    } finally {
      await fh.close();
    }
  }

  /** The stored blob, open, when it is there with the listed size. */
  private async openBlob(file: File): Promise<OpenedFile | undefined> {
    const path = this.deps.store.path(file.sha256);
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile() || stats.size !== file.size) {
        await handle.close();
        return undefined;
      }
      return {
        target: { kind: 'item', rootId: '', root: dirname(path), path: file.path, sha256: file.sha256, size: file.size, immutable: true, cacheKey: `blob:${file.sha256}` },
        handle,
        size: stats.size,
        mtime: stats.mtime,
        stats,
        close: () => handle.close(),
      };
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  /** Through sendEntity, as handler.ts serves a held item: preconditions, Range, HEAD, access-log bytes. */
  private async sendBlob(blob: OpenedFile, file: File, req: IncomingMessage, res: ServerResponse): Promise<void> {
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

  async close(): Promise<void> {
    await this.client?.close();
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

function reply(req: IncomingMessage, res: ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({ error: { code: 'MM_UPSTREAM_UNAVAILABLE', message } }) + '\n';
  // Not the item's validators: this answer is no representation of it.
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Retry-After': '60' });
  if (req.method === 'HEAD') return void res.end();
  addBytes(res, Buffer.byteLength(body));
  res.end(body);
}
