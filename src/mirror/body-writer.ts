import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { SizeMismatchError } from '../errors.js';
import type { PooledHash } from './hash-pool.js';
import type { RateLimiter } from './ratelimit.js';

export interface BodyWriterOptions {
  readonly path: string;
  /** Bytes before this offset are already in the file (a resume); new ones go after them. */
  readonly start: number;
  /** Most bytes the body may have; one more fails with SizeMismatchError. */
  readonly limit: number;
  readonly hash: PooledHash;
  readonly onBytes: (n: number) => void;
  readonly limiter?: RateLimiter;
  readonly signal?: AbortSignal;
  /** Runs before the file is opened (hashing what a resume keeps). */
  readonly prepare?: () => Promise<void>;
}

/**
 * The one stream between the socket and the disk. Chunks are gathered into a
 * batch buffer; a full batch is written at its offset, then handed
 * (transferred, not copied) to the hashing worker, which sends the buffer
 * back for reuse: one copy per byte, and no Readable or Transform hops, which
 * on a cold sync cost the event loop more than the bytes did. `final`
 * fsyncs, so a finished writer means a durable file.
 */
export class BodyWriter extends Writable {
  /** Body bytes taken so far. */
  received = 0;
  private file: FileHandle | undefined;
  /** Taken from the pool when the first byte for it arrives, handed to the hash worker when full. */
  private batch: Uint8Array | undefined;
  private fill = 0;
  private pos: number;
  private writing: Promise<void> | undefined;
  readonly start: number;

  constructor(private readonly o: BodyWriterOptions) {
    super({ highWaterMark: 1 << 20 });
    this.start = o.start;
    this.pos = o.start;
  }

  /** Resolves once the file is closed (after an error too): only then may it be unlinked. */
  settled(): Promise<void> {
    return new Promise((resolve) => (this.closed ? resolve() : this.once('close', () => resolve())));
  }

  override _construct(done: (err?: Error | null) => void): void {
    (async () => {
      await this.o.prepare?.();
      this.file = await open(this.o.path, this.o.start === 0 ? 'w' : 'r+');
    })().then(() => done(), done);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.received += chunk.length;
    if (this.received > this.o.limit) {
      done(new SizeMismatchError('', this.o.limit, this.received));
      return;
    }
    this.o.onBytes(chunk.length);
    const waits: Promise<void>[] = [];
    const n = this.copyIn(chunk);
    // The batch is full: write and hash it, then take the rest of the chunk (if any) into the next one.
    const flushing = this.full() ? this.emitBatch().then(() => this.take(chunk.subarray(n))) : undefined;
    if (flushing) waits.push(flushing);
    if (this.o.limiter?.enabled) waits.push(this.o.limiter.take(chunk.length, this.o.signal));
    if (waits.length === 0) done();
    else Promise.all(waits).then(() => done(), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    (async () => {
      if (this.fill > 0) await this.emitBatch();
      await this.file!.sync();
    })().then(() => done(), done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const file = this.file;
    this.file = undefined;
    if (!file) return done(err);
    (async () => {
      // What arrived before the connection dropped is kept, so a resume asks only for the rest.
      await this.writing?.catch(() => undefined);
      if (this.batch && this.fill > 0 && !(err instanceof SizeMismatchError)) await writeAll(file, this.batch, this.fill, this.pos).catch(() => undefined);
      await file.close();
    })().then(
      () => done(err),
      (closeErr: Error) => done(err ?? closeErr),
    );
  }

  /** Copies as much of `data` as the batch has room for; returns how much. */
  private copyIn(data: Buffer): number {
    const batch = (this.batch ??= new Uint8Array(this.o.hash.buffer()));
    const n = Math.min(data.length, batch.length - this.fill);
    batch.set(n === data.length ? data : data.subarray(0, n), this.fill);
    this.fill += n;
    return n;
  }

  private full(): boolean {
    return this.batch !== undefined && this.fill === this.batch.length;
  }

  /** The part of a chunk that did not fit: copied once the full batch is out. */
  private async take(rest: Buffer): Promise<void> {
    for (let at = 0; at < rest.length; ) {
      at += this.copyIn(rest.subarray(at));
      if (this.full()) await this.emitBatch();
    }
  }

  private async emitBatch(): Promise<void> {
    const batch = this.batch!;
    const length = this.fill;
    this.writing = writeAll(this.file!, batch, length, this.pos);
    await this.writing;
    this.writing = undefined;
    // Destroyed meanwhile: the hash was dropped with the attempt, and _destroy keeps these bytes.
    if (this.destroyed) return;
    this.pos += length;
    this.batch = undefined;
    this.fill = 0;
    const caughtUp = this.o.hash.update(batch.buffer as ArrayBuffer, length);
    if (caughtUp) await caughtUp;
  }
}

async function writeAll(file: FileHandle, data: Uint8Array, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesWritten } = await file.write(data, done, length - done, position + done);
    done += bytesWritten;
  }
}
