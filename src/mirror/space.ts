import { readdir, stat, statfs } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Layout } from '../store/layout.js';
import type { WantedFile } from './select.js';

/**
 * Kept free beyond what the downloads themselves take: the snapshot's
 * metadata (three forms of each products file), unpacked bootloaders, the
 * saved state, and each file's last partly used block.
 */
export const SPACE_MARGIN_BYTES = 1 << 20;
const BLOCK_BYTES = 4096;

export interface SpaceCheck {
  /** The folder whose file system was measured (dataDir, or its nearest existing parent). */
  readonly measured: string;
  /** Free for an unprivileged writer (statfs bavail). */
  readonly available: number;
  /** Bytes of the files to fetch. */
  readonly toFetch: number;
  /** Of those, already in partial files a sync resumes. */
  readonly resumable: number;
  /** Metadata and rounding kept free beyond the downloads. */
  readonly margin: number;
  /** toFetch - resumable + margin. */
  readonly needed: number;
  readonly fits: boolean;
}

/**
 * What the downloads of this sync need on dataDir's file system and whether
 * it is there. Blobs are renamed from partial/, never copied, and snapshot
 * items are hard links: the downloads are all the bulk a sync writes.
 */
export async function checkSpace(layout: Layout, missing: readonly WantedFile[], metadataBytes: () => number): Promise<SpaceCheck | undefined> {
  const fs = await measureFree(layout.dataDir);
  if (!fs) return undefined;
  let toFetch = 0;
  let resumable = 0;
  // One listing of partial/, then a stat only for the files that have a partial one (not 40,000 at 10,000 products).
  const parts = new Set(await readdir(layout.partialDir).catch(() => [] as string[]));
  for (const f of missing) {
    toFetch += f.size;
    if (!parts.has(basename(layout.partial(f.sha256)))) continue;
    const part = await stat(layout.partial(f.sha256)).catch(() => undefined);
    if (part?.isFile()) resumable += Math.min(part.size, f.size);
  }
  const margin = missing.length === 0 ? 0 : SPACE_MARGIN_BYTES + 3 * metadataBytes() + missing.length * BLOCK_BYTES;
  const needed = toFetch - resumable + margin;
  // Nothing to fetch never fails here: a full disk then shows up, precisely, where it bites.
  return { measured: fs.dir, available: fs.available, toFetch, resumable, margin, needed, fits: missing.length === 0 || needed <= fs.available };
}

/** Free bytes (statfs bavail) on the file system dataDir is or will be on. */
export async function measureFree(dataDir: string): Promise<{ dir: string; available: number } | undefined> {
  // Before the first sync dataDir may not exist: the nearest existing parent is the file system it will be on.
  for (let dir = dataDir; ; dir = dirname(dir)) {
    try {
      const s = await statfs(dir);
      return { dir, available: s.bavail * s.bsize };
    } catch {
      if (dirname(dir) === dir) return undefined;
    }
  }
}
