import { chmod, mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errnoOf } from '../errors.js';
import { fsyncDir, rethrowDiskFull } from './fsutil.js';
import { SHA256_RE, type Layout } from './layout.js';
import { inSlots } from './slots.js';

export interface BlobInfo {
  readonly sha256: string;
  readonly size: number;
}

/** File system calls in flight at once in `holding`. */
const FS_SLOTS = 32;

/**
 * Content-addressed files: each verified file once, named by its sha256.
 * `adopt` (a rename of an fsynced, verified file) is the only way in, so the
 * store never holds a byte that was not checked.
 */
export class BlobStore {
  constructor(readonly layout: Layout) {}

  path(sha256: string): string {
    return this.layout.blob(sha256);
  }

  async size(sha256: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(sha256))).size;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  async has(sha256: string, size?: number): Promise<boolean> {
    const s = await this.size(sha256);
    return s !== undefined && (size === undefined || s === size);
  }

  /**
   * Which of these sha256s the store holds (with the size given, when one is): one listing per shard
   * folder, then a stat only for the files it lists, rather than one stat per file wanted (40,000
   * files at 10,000 products, most of them absent on a first sync).
   */
  async holding(sizes: ReadonlyMap<string, number | undefined>): Promise<Set<string>> {
    const byShard = new Map<string, string[]>();
    for (const sha of sizes.keys()) {
      if (!SHA256_RE.test(sha)) continue;
      const list = byShard.get(sha.slice(0, 2));
      if (list) list.push(sha);
      else byShard.set(sha.slice(0, 2), [sha]);
    }
    const listed: string[] = [];
    await inSlots([...byShard], FS_SLOTS, async ([shard, list]) => {
      const entries = await readdir(join(this.layout.blobsDir, shard), { withFileTypes: true }).catch((err: unknown) => {
        if (errnoOf(err) === 'ENOENT') return [];
        throw err;
      });
      const files = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
      for (const sha of list) if (files.has(sha)) listed.push(sha);
    });
    const held = new Set<string>();
    await inSlots(listed, FS_SLOTS, async (sha) => {
      const size = sizes.get(sha);
      if (size === undefined || (await this.has(sha, size))) held.add(sha);
    });
    return held;
  }

  /**
   * Moves a verified file into the store. The caller has fsynced its
   * content; this makes the name durable too.
   */
  async adopt(verifiedFile: string, sha256: string): Promise<string> {
    if (!SHA256_RE.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    const target = this.path(sha256);
    try {
      await mkdir(dirname(target), { recursive: true });
      await chmod(verifiedFile, 0o444);
      await rename(verifiedFile, target);
      await fsyncDir(dirname(target));
    } catch (err) {
      throw rethrowDiskFull(err, target);
    }
    return target;
  }

  async remove(sha256: string): Promise<void> {
    await unlink(this.path(sha256)).catch((err) => {
      if (errnoOf(err) !== 'ENOENT') throw err;
    });
  }

  async *list(): AsyncGenerator<BlobInfo> {
    let shards: string[];
    try {
      shards = await readdir(this.layout.blobsDir);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return;
      throw err;
    }
    for (const shard of shards.sort()) {
      const names = await readdir(join(this.layout.blobsDir, shard)).catch(() => [] as string[]);
      for (const name of names.sort()) {
        if (!SHA256_RE.test(name) || name.slice(0, 2) !== shard) continue;
        const st = await stat(join(this.layout.blobsDir, shard, name)).catch(() => undefined);
        if (st?.isFile()) yield { sha256: name, size: st.size };
      }
    }
  }

  async totals(): Promise<{ blobs: number; bytes: number }> {
    let blobs = 0;
    let bytes = 0;
    for await (const b of this.list()) {
      blobs++;
      bytes += b.size;
    }
    return { blobs, bytes };
  }
}
