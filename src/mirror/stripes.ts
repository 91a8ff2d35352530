import { setMaxListeners } from 'node:events';
import { open, readFile, truncate, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { AbortedError, BadPart, ChecksumError, DiskFullError, RangeIgnored, SizeMismatchError, UpstreamHttpError, UpstreamNetworkError } from '../errors.js';
import { rethrowDiskFull } from '../store/fsutil.js';
import { failing } from './client.js';
import { parseContentRange, type DownloadContext, type DownloadRequest } from './download.js';
import type { PooledHash } from './hash-pool.js';

/**
 * One large file over several connections: on a long path one TCP flow gets
 * a fraction of the site's link, so the file is fetched as Range parts of
 * `stripeSize` bytes, `stripes` at a time, each written at its offset into
 * the partial file.
 *
 * The sha256 must cover the whole file in order, and SHA-256 cannot be
 * split. The hash follows the contiguous prefix: as the parts land, the
 * bytes from where the hash stopped up to the first gap are read back from
 * the file (still in the page cache: a kernel copy, no disk read) by the
 * hashing worker. That costs one extra memory copy per byte and nothing on
 * the main thread; hashing keeps pace with the download, so the digest is
 * ready moments after the last part instead of a whole-file pass at the end.
 *
 * Resume keeps working: a failed attempt cuts the file back to its
 * contiguous prefix (what a plain resume expects), and while parts are in
 * flight a marker file (`<partial>.at`) holds a prefix length known to be
 * written, so a crash leaves a file the next sync trims to that length.
 */

/** Body bytes gathered per write; parts are written at their offsets as these fill. */
const PART_BATCH = 256 * 1024;

/** The smallest part asked for near the end of a file. */
const MIN_PART = 64 * 1024;


/**
 * At the end of a file, a connection with nothing left to ask for takes over the back half of the
 * part with the most bytes still to come, when that half is at least this big: a new request costs
 * a round trip (and the shortened part's connection, which is closed when it reaches its new end).
 */
const SPLIT_MIN = 256 * 1024;

interface Part {
  readonly start: number;
  /** Inclusive, as in a Range header. Moves down when the end game hands the back of the part to another connection. */
  end: number;
  /** Bytes of this part on disk (written, in order from start). */
  written: number;
  /** Bytes of this part taken from its response so far (written or about to be). */
  received: number;
  /** Set while its request runs: ends the request once a shortened part has all its bytes. */
  stop?: () => void;
}

function partLength(part: Part): number {
  return part.end - part.start + 1;
}

/** The marker a striped download leaves beside its partial file. */
export function stripeMarker(partial: string): string {
  return `${partial}.at`;
}

/**
 * A striped download that did not end (a crash or a kill) may have left
 * parts after a gap: cut the file back to the prefix its marker vouches for.
 */
export async function recoverStriped(partial: string): Promise<void> {
  const marker = stripeMarker(partial);
  const text = await readFile(marker, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const at = /^\d+$/.test(text.trim()) ? Number(text.trim()) : 0;
  await truncateTo(partial, at);
  await unlink(marker).catch(() => undefined);
}

/** Shortens a file to `length` when it is longer (a missing file is left missing). */
async function truncateTo(file: string, length: number): Promise<void> {
  const fh = await open(file, 'r+').catch(() => undefined);
  if (!fh) return;
  try {
    if ((await fh.stat()).size > length) await fh.truncate(length);
  } finally {
    await fh.close();
  }
}

/** Whether a download of `size` bytes from `offset` is worth striping under these settings. */
export function shouldStripe(size: number, offset: number, stripes: number, stripeSize: number): boolean {
  return stripes > 1 && size - offset >= 2 * stripeSize;
}

/**
 * Fetches [offset, size) of `req` in parts into `partial` (whose first
 * `offset` bytes are kept), verifies the whole file and adopts it. Throws
 * RangeIgnored, before writing anything, when the first part comes back as
 * a 200: the caller then fetches the file as one stream.
 */
export async function stripedTransfer(
  req: DownloadRequest,
  ctx: DownloadContext,
  partial: string,
  offset: number,
  hash: PooledHash,
  stripes: number,
  stripeSize: number,
): Promise<{ offset: number; fetched: number }> {
  const marker = stripeMarker(partial);
  const abort = new AbortController();
  // Each part's request listens on it: more than Node's default of 10 is expected here.
  setMaxListeners(stripes + 10, abort.signal);
  const onAbort = () => abort.abort();
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  const fh = await open(partial, offset === 0 ? 'w' : 'r+');
  const s = new Striped(req, ctx, partial, fh, offset, hash, marker, abort.signal, stripes, stripeSize);
  let failure: unknown;
  try {
    await writeFile(marker, String(offset));
    await s.run();
  } catch (err) {
    failure = err;
    abort.abort();
  } finally {
    ctx.signal?.removeEventListener('abort', onAbort);
    await s.settled();
    await fh.close().catch(() => undefined);
  }
  if (failure !== undefined) throw await s.fail(failure);
  // Every part is on disk and the hash has read it all, in order.
  const sync = await open(partial, 'r+');
  try {
    await sync.sync();
  } finally {
    await sync.close();
  }
  const actual = await hash.digest();
  if (actual !== req.sha256) {
    await s.discard();
    throw new ChecksumError(req.url, req.sha256, actual);
  }
  await ctx.store.adopt(partial, req.sha256);
  await unlink(marker).catch(() => undefined);
  return { offset, fetched: req.size - offset };
}

class Striped {
  /** Parts handed out so far, in file order; the bytes after the last one are not asked for yet. */
  private readonly parts: Part[] = [];
  private assigned: number;
  private whole = 0;
  private hashed = 0;
  private hashing: Promise<void> | undefined;
  private hashError: unknown;
  private marked: number;
  private marking: Promise<void> = Promise.resolve();
  private readonly writers = new Set<PartWriter>();
  /** Write batches of finished parts, reused by the next ones: one per connection, not one per part. */
  private readonly batches: Buffer[] = [];
  private readonly requests = new Set<Promise<void>>();
  /** Set once the first part's answer shows the server honours Range. */
  private rangesOk = false;

  constructor(
    private readonly req: DownloadRequest,
    private readonly ctx: DownloadContext,
    private readonly partial: string,
    private readonly fh: FileHandle,
    private readonly offset: number,
    private readonly hash: PooledHash,
    private readonly marker: string,
    private readonly signal: AbortSignal,
    private readonly stripes: number,
    private readonly stripeSize: number,
  ) {
    this.marked = offset;
    this.assigned = offset;
  }

  /** The first part alone (it tells whether Range works), then up to `stripes` parts at a time. */
  async run(): Promise<void> {
    const stripes = this.stripes;
    let opened!: () => void;
    const firstAnswered = new Promise<void>((ok) => (opened = ok));
    const lanes: Promise<void>[] = [this.lane(opened)];
    await Promise.race([firstAnswered, lanes[0]]);
    if (this.rangesOk) for (let i = 1; i < stripes; i++) lanes.push(this.lane());
    await Promise.all(lanes);
    await this.catchUpHash();
    if (this.hashed !== this.req.size) throw new UpstreamNetworkError(this.req.url, `striped download stopped at byte ${this.hashed} of ${this.req.size}`);
  }

  /** One connection's worth: takes the next part until the file is handed out, then splits what is still coming. */
  private async lane(answered?: () => void): Promise<void> {
    for (let part = this.nextPart() ?? this.splitPart(); part; part = this.nextPart() ?? this.splitPart()) {
      if (this.signal.aborted) throw new AbortedError();
      await this.fetchPart(part, part.start === this.offset ? answered : undefined);
    }
  }

  /**
   * Parts are stripeSize until the end comes near, then a share of what is
   * left (down to an eighth of stripeSize): every connection then finishes
   * about together, instead of the last full-size part riding one
   * connection alone while the others idle.
   */
  private nextPart(): Part | undefined {
    const left = this.req.size - this.assigned;
    if (left <= 0) return undefined;
    const floor = Math.max(MIN_PART, Math.floor(this.stripeSize / 8));
    const size = Math.min(left, Math.max(floor, Math.min(this.stripeSize, Math.ceil(left / this.stripes))));
    const part: Part = { start: this.assigned, end: this.assigned + size - 1, written: 0, received: 0 };
    this.assigned += size;
    this.parts.push(part);
    return part;
  }

  /**
   * The end game: everything is asked for, and this connection would idle while others still
   * bring their parts in at one connection's rate. It takes the back half of the part with the
   * most bytes still to come; that part's request is ended when it reaches its new end.
   */
  private splitPart(): Part | undefined {
    if (!this.rangesOk) return undefined;
    let victim: Part | undefined;
    for (const p of this.parts) if (p.stop && (!victim || partLength(p) - p.received > partLength(victim) - victim.received)) victim = p;
    if (!victim) return undefined;
    const coming = partLength(victim) - victim.received;
    if (coming < 2 * SPLIT_MIN) return undefined;
    const at = victim.start + victim.received + Math.ceil(coming / 2);
    const part: Part = { start: at, end: victim.end, written: 0, received: 0 };
    victim.end = at - 1;
    this.parts.splice(this.parts.indexOf(victim) + 1, 0, part);
    return part;
  }

  private async fetchPart(part: Part, answered?: () => void): Promise<void> {
    // What is asked for; the part itself may be shortened while the answer comes in.
    const asked = { start: part.start, end: part.end };
    const stopped = new AbortController();
    part.stop = () => stopped.abort();
    let writer: PartWriter | undefined;
    const done = this.ctx.client.stream(
      this.req.url,
      { 'accept-encoding': 'identity', range: `bytes=${asked.start}-${asked.end}` },
      AbortSignal.any([this.signal, stopped.signal]),
      (status, h) => {
        if (status === 200 && answered) return failing(new RangeIgnored());
        const cr = parseContentRange(h['content-range']);
        if (status !== 206 || !cr || cr.start !== asked.start || cr.end !== asked.end || (cr.total !== undefined && cr.total !== this.req.size)) {
          return failing(new BadPart(this.req.url, `HTTP ${status} with Content-Range ${String(h['content-range'])} for bytes ${asked.start}-${asked.end}`));
        }
        this.rangesOk = true;
        answered?.();
        writer = new PartWriter(this.fh, part, asked.end - asked.start + 1, this.ctx, (n) => this.wrote(n), this.batches);
        this.writers.add(writer);
        return writer;
      },
    );
    this.requests.add(done);
    try {
      await done;
    } catch (err) {
      // A shortened part ends its own request once its bytes are on disk: that is its success.
      if (!(stopped.signal.aborted && !this.signal.aborted && part.written === partLength(part))) throw err;
    } finally {
      part.stop = undefined;
      this.requests.delete(done);
      answered?.();
    }
    if (part.written !== partLength(part)) throw new UpstreamNetworkError(this.req.url, `the upstream sent ${part.written} of ${partLength(part)} bytes of a part`);
  }

  /** Bytes of some part reached the disk: the hash takes what is now contiguous, the marker follows in steps. */
  private wrote(_n: number): void {
    this.kickHash();
    const front = this.frontier();
    if (front - this.marked >= this.stripeSize) {
      this.marked = front;
      this.marking = this.marking.then(() => writeFile(this.marker, String(front)).catch(() => undefined));
    }
  }

  /** End of the contiguous prefix on disk. */
  private frontier(): number {
    // Parts before `whole` are complete: no need to look at them again.
    while (this.whole < this.parts.length && this.parts[this.whole]!.written === this.parts[this.whole]!.end - this.parts[this.whole]!.start + 1) this.whole++;
    const open = this.parts[this.whole];
    return open ? open.start + open.written : this.assigned;
  }

  /** Bytes on disk, in order, that the hash has not read yet. */
  private hashBehind(): boolean {
    return this.hashError === undefined && this.frontier() > this.hashed;
  }

  /** Starts the in-order hash reader unless it runs already or has nothing to read. */
  private kickHash(): void {
    if (this.hashing || !this.hashBehind()) return;
    const run: Promise<void> = this.hashAhead().finally(() => {
      if (this.hashing === run) this.hashing = undefined;
    });
    this.hashing = run;
  }

  /** Feeds the hash, in order, from where it stopped up to the frontier, until it catches up. */
  private async hashAhead(): Promise<void> {
    try {
      // A resume: the bytes kept from before come first.
      if (this.hashed < this.offset) {
        await this.hash.updateFromFile(this.partial, this.offset, this.hashed);
        this.hashed = this.offset;
      }
      for (let front = this.frontier(); front > this.hashed; front = this.frontier()) {
        await this.hash.updateFromFile(this.partial, front, this.hashed);
        this.hashed = front;
      }
    } catch (err) {
      this.hashError = err;
    }
  }

  private async catchUpHash(): Promise<void> {
    for (;;) {
      if (this.hashing) await this.hashing;
      else if (this.hashBehind()) this.kickHash();
      else break;
    }
    if (this.hashError !== undefined) throw this.hashError;
  }

  /** Resolves once no request, writer, hash read or marker write is running. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.requests]);
    await Promise.all([...this.writers].map((w) => w.settled()));
    while (this.hashing) await this.hashing.catch(() => undefined);
    await this.marking;
  }

  /**
   * After a failed attempt: what to throw, with the partial file left as a
   * plain resume expects it (its contiguous prefix), or gone when nothing
   * of it can be trusted.
   */
  async fail(err: unknown): Promise<unknown> {
    if (err instanceof RangeIgnored) {
      await this.dropMarker();
      return err;
    }
    if (this.ctx.signal?.aborted) err = new AbortedError();
    if (err instanceof BadPart) {
      await this.discard();
      return new UpstreamNetworkError(this.req.url, `${err.detail}; starting again from zero`);
    }
    if (err instanceof UpstreamHttpError && err.status === 416) {
      await this.discard();
      return new UpstreamNetworkError(this.req.url, 'the upstream cannot serve a part of this file (HTTP 416); starting again from zero');
    }
    if (err instanceof SizeMismatchError) {
      await this.discard();
      return new SizeMismatchError(this.req.url, this.req.size, this.req.size + err.actual - err.expected);
    }
    const e = rethrowDiskFull(err, this.partial);
    if (e instanceof DiskFullError) {
      await this.discard();
      return e;
    }
    await truncate(this.partial, this.frontier()).catch(() => undefined);
    await this.dropMarker();
    return e;
  }

  async discard(): Promise<void> {
    await unlink(this.partial).catch(() => undefined);
    await this.dropMarker();
  }

  private async dropMarker(): Promise<void> {
    await this.marking;
    await unlink(this.marker).catch(() => undefined);
  }
}


/**
 * Writes one part's body at its offset, in batches; counts a byte as
 * written only once the write returned, so the frontier never runs ahead
 * of the disk.
 */
class PartWriter extends Writable {
  private received = 0;
  private batch: Buffer | undefined;
  private fill = 0;
  private writing: Promise<void> | undefined;

  constructor(
    private readonly fh: FileHandle,
    private readonly part: Part,
    private readonly length: number,
    private readonly ctx: DownloadContext,
    private readonly onWritten: (n: number) => void,
    private readonly spare: Buffer[],
  ) {
    super({ highWaterMark: PART_BATCH });
  }

  /** Gives the batch back for the next part once nothing writes from it any more. */
  private release(): void {
    if (this.batch) this.spare.push(this.batch);
    this.batch = undefined;
  }

  settled(): Promise<void> {
    return new Promise((resolve) => (this.closed ? resolve() : this.once('close', () => resolve())));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.received += chunk.length;
    if (this.received > this.length) return done(new SizeMismatchError('', this.length, this.received));
    // Bytes past a shortened part's new end belong to the part split off it, which asks for them itself.
    const room = partLength(this.part) - this.part.received;
    const mine = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.part.received += mine.length;
    this.ctx.onBytes?.(mine.length);
    const waits: Promise<void>[] = [this.take(mine)];
    if (this.ctx.limiter?.enabled) waits.push(this.ctx.limiter.take(mine.length, this.ctx.signal));
    const shortened = this.part.received === partLength(this.part) && partLength(this.part) < this.length;
    Promise.all(waits)
      // All of a shortened part is here: to disk first, then the rest of the answer is not wanted.
      .then(() => (shortened ? this.flush() : undefined))
      .then(() => {
        done();
        if (shortened) this.part.stop?.();
      }, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.flush().then(() => {
      this.release();
      done();
    }, done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // A write in flight finishes before the file may be cut back or closed.
    const end = () => {
      this.release();
      done(err);
    };
    (this.writing ?? Promise.resolve()).then(end, end);
  }

  private async take(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      const batch = (this.batch ??= this.spare.pop() ?? Buffer.allocUnsafe(PART_BATCH));
      const n = Math.min(chunk.length - at, batch.length - this.fill);
      chunk.copy(batch, this.fill, at, at + n);
      this.fill += n;
      at += n;
      if (this.fill === batch.length) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    if (this.fill === 0) return;
    const length = this.fill;
    this.writing = (async () => {
      for (let off = 0; off < length; ) {
        const { bytesWritten } = await this.fh.write(this.batch!, off, length - off, this.part.start + this.part.written + off);
        off += bytesWritten;
      }
    })();
    await this.writing;
    this.writing = undefined;
    this.fill = 0;
    this.part.written += length;
    this.onWritten(length);
  }
}
