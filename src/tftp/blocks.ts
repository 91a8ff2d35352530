import type { TftpFile } from './files.js';
import { toNetascii } from './netascii.js';

/** Bytes read from the file per read call beyond what the window needs: fewer syscalls in lock-step. */
export const READ_AHEAD = 128 * 1024;

/**
 * The blocks of one transfer, numbered from 1, read ahead in large chunks.
 * The window only moves forward, so the stream is produced sequentially and
 * only the part from the oldest unacknowledged block on is kept. Buffers are
 * never written after a block was handed out: a DATA packet still queued in
 * the socket may point into them.
 */
export class BlockSource {
  /** Number of the last block (the short one), once the length is known. */
  lastBlock: number | undefined;
  private buf: Buffer = Buffer.alloc(0);
  /** Stream offset of buf[0]. */
  private bufStart = 0;
  /** Next file position to read. */
  private filePos = 0;
  private eof = false;
  /** Length of the stream sent: the file size, or the netascii length once known. */
  private streamLength: number | undefined;

  constructor(
    private readonly file: TftpFile,
    private readonly blksize: number,
    private readonly netascii: boolean,
  ) {
    if (!netascii) this.setLength(file.size);
  }

  /** Bytes in blocks 1..n, for accounting what a client acknowledged. */
  bytesThrough(n: number): number {
    const full = n * this.blksize;
    return this.streamLength === undefined ? full : Math.min(full, this.streamLength);
  }

  /** Whether blocks first..last (or up to the last block) are in memory. */
  has(first: number, last: number): boolean {
    const start = (first - 1) * this.blksize;
    const end = this.clampEnd(last * this.blksize);
    return start >= this.bufStart && (end <= this.bufStart + this.buf.length || (this.eof && this.netascii));
  }

  async load(first: number, last: number): Promise<void> {
    const start = (first - 1) * this.blksize;
    const end = this.clampEnd(last * this.blksize);
    if (start < this.bufStart) throw new Error(`block ${first} was already released`);
    if (start > this.bufStart + this.buf.length) {
      if (this.netascii) throw new Error(`netascii stream cannot skip to block ${first}`);
      this.buf = Buffer.alloc(0);
      this.bufStart = start;
      this.filePos = start;
    } else {
      this.buf = this.buf.subarray(start - this.bufStart);
      this.bufStart = start;
    }
    while (this.bufStart + this.buf.length < end && !this.eof) {
      const data = await this.readChunk(Math.max(READ_AHEAD, end - this.bufStart - this.buf.length));
      if (data.length > 0) this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    }
    if (this.eof && this.streamLength === undefined) this.setLength(this.bufStart + this.buf.length);
  }

  /** Copies the payload of block n (loaded) into `target` at `at`; returns its length. No view is made: this runs per packet. */
  copyBlock(n: number, target: Buffer, at: number): number {
    const offset = (n - 1) * this.blksize - this.bufStart;
    return this.buf.copy(target, at, offset, Math.min(offset + this.blksize, this.buf.length));
  }

  private async readChunk(wanted: number): Promise<Buffer> {
    const size = this.netascii ? wanted : Math.min(wanted, this.file.size - this.filePos);
    if (size <= 0) {
      this.eof = true;
      return Buffer.alloc(0);
    }
    const chunk = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = await this.file.read(chunk.subarray(got), this.filePos + got);
      if (n <= 0) break;
      got += n;
    }
    this.filePos += got;
    if (got < size) {
      // The announced size (tsize) is a promise to the client; a file that shrank breaks it.
      if (!this.netascii) throw new Error(`file shrank to ${this.filePos} bytes while being served`);
      this.eof = true;
    }
    const data = chunk.subarray(0, got);
    return this.netascii ? toNetascii(data) : data;
  }

  private clampEnd(end: number): number {
    return this.streamLength === undefined ? end : Math.min(end, this.streamLength);
  }

  private setLength(length: number): void {
    this.streamLength = length;
    // A length that is a multiple of blksize ends with an empty block.
    this.lastBlock = Math.floor(length / this.blksize) + 1;
  }
}
