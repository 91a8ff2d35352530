import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { constants } from 'node:fs';
import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import { ChecksumError, errnoOf, isMirrorError, SizeMismatchError, UpstreamHttpError, UpstreamNetworkError, UpstreamUnavailableError } from '../errors.js';
import type { BlobStore } from '../store/blobs.js';
import type { Layout } from '../store/layout.js';
import type { ManifestFile } from '../store/manifest.js';
import type { OpenedFile } from '../store/resolver.js';
import { translateError, UpstreamClient } from './client.js';
import { joinUrl } from './url.js';

export { UpstreamUnavailableError };

export type PullFile = ManifestFile & { readonly path: string };

/**
 * One upstream transfer of an on-demand item as its readers see it. Bytes go
 * to `partial` first; `written` of them are there. It ends exactly once:
 * `finished` (verified and adopted into the store) or `failed`. Every change
 * emits 'progress'. Readers never touch the upstream body.
 */
export interface PullDownload extends EventEmitter {
  readonly file: PullFile;
  readonly partial: string;
  readonly written: number;
  readonly finished: boolean;
  /** What a client may be told (never a local path); the server log has the details. */
  readonly failed: UpstreamUnavailableError | undefined;
}

/** The HTTP side's view of pull-through (src/http/pull-through.ts writes the responses). */
export interface PullThroughSource {
  /** The stored blob, open, when it is there with the listed size (pulled through, not yet republished). */
  openStored(file: PullFile): Promise<OpenedFile | undefined>;
  /**
   * The running download of `file`, or a new one. Resolves once the upstream
   * answered and the partial file exists; rejects with an
   * UpstreamUnavailableError (503) when the source is gone, the item is
   * backing off after a failure, or the download failed before its first byte.
   */
  download(file: PullFile): Promise<PullDownload>;
}

export interface PullThroughDeps {
  readonly layout: Layout;
  readonly store: BlobStore;
  readonly logger: Logger;
  /** A getter: SIGHUP may swap the configuration. */
  readonly config: () => Config;
  readonly onBytes?: (source: string, bytes: number) => void;
  /** How long a failed item is not fetched again: the first window, doubled per failure up to the last. */
  readonly backoff?: { readonly firstMs: number; readonly maxMs: number };
}

/** 30 s doubling to 10 min: a bad item costs the upstream at most one transfer per window, however many clients ask. */
const DEFAULT_BACKOFF = { firstMs: 30_000, maxMs: 600_000 } as const;
/** Failed items remembered at once; the oldest is forgotten first (it then only loses its back-off). */
const MAX_BACKOFF_ENTRIES = 10_000;

class SharedDownload extends EventEmitter implements PullDownload {
  written = 0;
  finished = false;
  failed: UpstreamUnavailableError | undefined;
  readonly ready: Promise<void>;
  private fh: FileHandle | undefined;
  private body: (AsyncIterable<Buffer> & { destroy(): unknown }) | undefined;
  private settled!: (failure: Error | undefined) => void;
  /** Resolves once, when the download finished (undefined) or failed (the full error, for the log). */
  readonly ended = new Promise<Error | undefined>((resolve) => (this.settled = resolve));

  constructor(
    readonly file: PullFile,
    readonly partial: string,
    private readonly url: string,
    private readonly deps: PullThroughDeps,
    private readonly client: UpstreamClient,
  ) {
    super();
    this.setMaxListeners(0);
    this.ready = this.start();
    this.ready.catch(() => undefined);
  }

  /** Upstream answered and the partial file is open; the body then flows in the background. */
  private async start(): Promise<void> {
    try {
      await mkdir(dirname(this.partial), { recursive: true });
      // A leftover partial from an earlier failure: start clean, clients read from byte 0.
      await unlink(this.partial).catch(() => undefined);
      const res = await this.client.get(this.url, { 'accept-encoding': 'identity' });
      this.body = res.body;
      this.fh = await open(this.partial, 'w', 0o644);
    } catch (err) {
      await this.fail(err);
      throw this.failed;
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    const hash = createHash('sha256');
    try {
      for await (const chunk of this.body!) {
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
    } catch (err) {
      await this.fail(err);
      return;
    }
    this.finished = true;
    this.deps.logger.info({ path: this.file.path, bytes: this.written }, 'pulled through and stored');
    this.settled(undefined);
    this.emit('progress');
  }

  /** The one failure path, whatever failed: the body is destroyed, the partial removed, readers told. */
  private async fail(err: unknown): Promise<void> {
    if (this.failed || this.finished) return;
    const cause = translateError(err, this.url) as Error;
    this.failed = new UpstreamUnavailableError(publicMessage(this.file, cause), { cause });
    this.body?.destroy();
    this.deps.logger.error({ path: this.file.path, code: isMirrorError(cause) ? cause.code : errnoOf(cause), err: cause }, `pull-through failed: ${cause.message}`);
    this.emit('progress');
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
    await unlink(this.partial).catch(() => undefined);
    this.settled(cause);
  }
}

/** What went wrong, in words a client may see: upstream failures name the upstream URL, local ones only their errno. */
function publicMessage(file: PullFile, cause: Error): string {
  if (cause instanceof UpstreamHttpError || cause instanceof UpstreamNetworkError) {
    return `${file.path} is not held yet and the upstream cannot be reached (${cause.message})`;
  }
  if (cause instanceof ChecksumError || cause instanceof SizeMismatchError) {
    return `${file.path} is not held yet and its upstream bytes are wrong (${cause.message})`;
  }
  return `${file.path} is not held yet and storing it failed here (${errnoOf(cause) ?? 'unexpected error'}; the server log has the details)`;
}

interface Backoff {
  until: number;
  delayMs: number;
  reason: string;
}

/**
 * The mirror side of pull-through: one shared download per on-demand item,
 * and a back-off per failed item. It never writes a response.
 */
export class PullThroughService implements PullThroughSource {
  private readonly inflight = new Map<string, SharedDownload>();
  private readonly backoffs = new Map<string, Backoff>();
  private client: UpstreamClient | undefined;

  constructor(private readonly deps: PullThroughDeps) {}

  async openStored(file: PullFile): Promise<OpenedFile | undefined> {
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

  async download(file: PullFile): Promise<PullDownload> {
    let dl = this.inflight.get(file.sha256);
    if (!dl) {
      this.refuseWhileBackingOff(file);
      const source = this.deps.config().sources.find((s) => s.name === file.source);
      if (!source) throw new UpstreamUnavailableError(`${file.path} is not held and its source "${file.source}" is no longer configured`);
      dl = this.begin(file, joinUrl(source.url, file.path));
    }
    await dl.ready;
    // Joined just as it failed (it leaves the in-flight map once its partial is removed).
    if (dl.failed) throw dl.failed;
    return dl;
  }

  private begin(file: PullFile, url: string): SharedDownload {
    const cfg = this.deps.config().download;
    this.client ??= new UpstreamClient({ connectTimeout: cfg.connectTimeout, idleTimeout: cfg.idleTimeout, connections: cfg.concurrency + 2, proxy: cfg.proxy });
    const dl = new SharedDownload(file, this.deps.layout.partial(file.sha256), url, this.deps, this.client);
    this.inflight.set(file.sha256, dl);
    let counted = 0;
    dl.on('progress', () => {
      this.deps.onBytes?.(file.source, dl.written - counted);
      counted = dl.written;
    });
    void dl.ended.then((failure) => {
      this.inflight.delete(file.sha256);
      if (failure === undefined) this.backoffs.delete(file.sha256);
      else this.backOff(file, dl.failed!.message);
    });
    return dl;
  }

  private refuseWhileBackingOff(file: PullFile): void {
    const b = this.backoffs.get(file.sha256);
    if (!b) return;
    const left = b.until - Date.now();
    if (left <= 0) return;
    const seconds = Math.ceil(left / 1000);
    throw new UpstreamUnavailableError(`${b.reason}; it is not fetched again for ${seconds} s`, { retryAfterSeconds: seconds });
  }

  private backOff(file: PullFile, reason: string): void {
    const { firstMs, maxMs } = this.deps.backoff ?? DEFAULT_BACKOFF;
    const previous = this.backoffs.get(file.sha256);
    const delayMs = previous ? Math.min(previous.delayMs * 2, maxMs) : firstMs;
    this.backoffs.delete(file.sha256);
    if (this.backoffs.size >= MAX_BACKOFF_ENTRIES) this.backoffs.delete(this.backoffs.keys().next().value!);
    this.backoffs.set(file.sha256, { until: Date.now() + delayMs, delayMs, reason });
  }

  async close(): Promise<void> {
    await this.client?.close();
  }
}
