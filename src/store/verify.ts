import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore } from './blobs.js';
import type { Layout } from './layout.js';
import { keptManifests } from './snapshots.js';

export interface VerifyReport {
  readonly checked: number;
  readonly bytes: number;
  readonly corrupt: { sha256: string; actual: string; quarantined: string }[];
}

export async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Re-hashes every blob. A corrupt one is moved to quarantine/ and its hard
 * links in the snapshots are removed (they are the same bad inode), so no
 * server hands it out and the next sync fetches it again.
 */
export async function verifyStore(layout: Layout, store: BlobStore, onProgress?: (sha: string) => void): Promise<VerifyReport> {
  const corrupt: VerifyReport['corrupt'] = [];
  let checked = 0;
  let bytes = 0;
  for await (const b of store.list()) {
    onProgress?.(b.sha256);
    const actual = await hashFile(store.path(b.sha256));
    checked++;
    bytes += b.size;
    if (actual === b.sha256) continue;
    await mkdir(layout.quarantineDir, { recursive: true });
    const quarantined = join(layout.quarantineDir, `${b.sha256}.${Date.now()}`);
    await rename(store.path(b.sha256), quarantined);
    corrupt.push({ sha256: b.sha256, actual, quarantined });
  }
  if (corrupt.length > 0) {
    const bad = new Set(corrupt.map((c) => c.sha256));
    for (const m of await keptManifests(layout)) {
      for (const [path, f] of Object.entries(m.files)) {
        if (bad.has(f.sha256)) await unlink(join(layout.snapshot(m.id), path)).catch(() => undefined);
      }
    }
  }
  return { checked, bytes, corrupt };
}
