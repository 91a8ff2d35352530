import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import { ChecksumError, MirrorError, SizeMismatchError } from '../errors.js';
import type { BlobStore } from '../store/blobs.js';
import type { Layout } from '../store/layout.js';
import type { ManifestFile } from '../store/manifest.js';
import { translateError, UpstreamClient } from './client.js';
import { joinUrl } from './url.js';
import { drained } from '../http/drained.js';

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
    if (await this.deps.store.has(file.sha256, file.size)) return this.sendBlob(file, req, res);
    const source = this.deps.config().sources.find((s) => s.name === file.source);
    if (!source) {
      return reply(res, 503, `${file.path} is not held and its source "${file.source}" is no longer configured`);
    }
    let dl = this.inflight.get(file.sha256);
    if (!dl) {
      const cfg = this.deps.config().download;
      this.client ??= new UpstreamClient({ connectTimeout: cfg.connectTimeout, idleTimeout: cfg.idleTimeout, connections: cfg.concurrency + 2 });
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
      return reply(res, 503, (err as Error).message);
    }
    return this.stream(dl, req, res);
  };

  private async stream(dl: SharedDownload, req: IncomingMessage, res: ServerResponse): Promise<void> {
    let fh: FileHandle;
    try {
      fh = await open(dl.partial, 'r');
    } catch (err) {
      // Finished (and renamed into the store) between the check and here.
      if (dl.finished) return this.sendBlob(dl.file, req, res);
      throw err;
    }
    try {
      // Range is not honoured for bytes still on their way: the whole file, 200, is always correct.
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(dl.file.size),
        ETag: `"${dl.file.sha256}"`,
        'Cache-Control': 'no-cache',
      });
      if (req.method === 'HEAD') return void res.end();
      let pos = 0;
      let closed = false;
      res.once('close', () => {
        closed = true;
        dl.emit('progress');
      });
      while (pos < dl.file.size && !closed) {
        // The last byte waits for the verdict: a client never sees a clean end of wrong bytes.
        const available = dl.finished ? dl.file.size : Math.min(dl.written, dl.file.size - 1);
        if (pos >= available) {
          if (dl.failed) break;
          await once(dl, 'progress');
          continue;
        }
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, available - pos));
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        if (!res.write(buf.subarray(0, bytesRead))) await drained(res);
      }
      if (closed) return;
      if (dl.failed || pos < dl.file.size) res.destroy(dl.failed);
      else res.end();
    } finally {
      await fh.close();
    }
  }

  private async sendBlob(file: File, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fh = await open(this.deps.store.path(file.sha256), 'r');
    try {
      const st = await fh.stat();
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(st.size),
        ETag: `"${file.sha256}"`,
        'Cache-Control': 'public, max-age=31536000, immutable',
        'Last-Modified': st.mtime.toUTCString(),
      });
      if (req.method === 'HEAD') return void res.end();
      const stream = fh.createReadStream({ highWaterMark: READ_CHUNK, autoClose: false });
      stream.pipe(res);
      await Promise.race([once(res, 'close'), once(stream, 'end').then(() => once(res, 'finish'))]);
      stream.destroy();
    } finally {
      await fh.close();
    }
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}

function reply(res: ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({ error: { code: 'MM_UPSTREAM_UNAVAILABLE', message } }) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Retry-After': '60' });
  res.end(body);
}
