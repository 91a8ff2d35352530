import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { LRUCache } from 'lru-cache';
import type { OpenedFile } from '../store/resolver.js';

/**
 * Small files (metadata, bootloaders) kept in memory by a key that names
 * immutable bytes (snapshot or bootloader id + path), so a hit needs no
 * open() at all. Larger files are streamed; only their content hash is kept.
 */

export interface CachedFile {
  readonly data: Buffer;
  readonly sha256: string;
  readonly lastModified: Date;
  readonly gzip: Buffer | undefined;
}

export interface ContentCacheOptions {
  /** Total bytes kept (default 64 MiB). */
  readonly maxBytes?: number;
  /** Larger files are not kept (default 8 MiB). */
  readonly maxEntryBytes?: number;
}

export class ContentCache {
  private readonly files: LRUCache<string, CachedFile>;
  private readonly hashes = new LRUCache<string, string>({ max: 10_000 });
  private readonly pending = new Map<string, Promise<CachedFile | undefined>>();
  readonly maxEntryBytes: number;

  constructor(options: ContentCacheOptions = {}) {
    this.maxEntryBytes = options.maxEntryBytes ?? 8 * 1024 * 1024;
    this.files = new LRUCache({
      maxSize: options.maxBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (f) => f.data.length + (f.gzip?.length ?? 0) + 256,
    });
  }

  clear(): void {
    this.files.clear();
    this.hashes.clear();
  }

  /**
   * The cached bytes, or else the opened file when it is too large to keep
   * (the caller streams it and closes it). Concurrent misses read once.
   */
  async fetch(key: string, open: () => Promise<OpenedFile>, gzip: (size: number) => boolean): Promise<CachedFile | OpenedFile> {
    const hit = this.files.get(key);
    if (hit) return hit;
    const waiting = this.pending.get(key);
    if (waiting) {
      const got = await waiting;
      if (got) return got;
      return open();
    }
    const work = (async (): Promise<CachedFile | OpenedFile> => {
      const file = await open();
      if (file.size > this.maxEntryBytes) return file;
      try {
        const data = await readAll(file);
        const entry: CachedFile = {
          data,
          sha256: createHash('sha256').update(data).digest('hex'),
          lastModified: file.mtime,
          gzip: gzip(data.length) ? gzipSync(data, { level: 6 }) : undefined,
        };
        this.files.set(key, entry);
        return entry;
      } finally {
        await file.close();
      }
    })();
    const shared = work.then(
      (r) => ('data' in r ? r : undefined),
      () => undefined,
    );
    this.pending.set(key, shared);
    try {
      return await work;
    } finally {
      this.pending.delete(key);
    }
  }

  /** sha256 of a large file, read through its open handle once per key. */
  async hashOf(key: string, file: OpenedFile): Promise<string> {
    const known = this.hashes.get(key);
    if (known) return known;
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (let pos = 0; pos < file.size; ) {
      const { bytesRead } = await file.handle.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    const hex = hash.digest('hex');
    this.hashes.set(key, hex);
    return hex;
  }
}

async function readAll(file: OpenedFile): Promise<Buffer> {
  const data = Buffer.allocUnsafe(file.size);
  let pos = 0;
  while (pos < file.size) {
    const { bytesRead } = await file.handle.read(data, pos, file.size - pos, pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
  }
  return pos === file.size ? data : data.subarray(0, pos);
}
