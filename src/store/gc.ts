import { mkdir, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { errnoOf } from '../errors.js';
import { isTempName, writeFileAtomic } from './fsutil.js';
import { join } from 'node:path';
import type { BlobStore } from './blobs.js';
import type { Layout } from './layout.js';
import type { SnapshotManifest } from './manifest.js';
import { currentSnapshotId, keptManifests, pruneSnapshots } from './snapshots.js';

export interface GcOptions {
  layout: Layout;
  store: BlobStore;
  keepSnapshots: number;
  /** Partial downloads younger than this are kept: a sync may resume them. */
  partialProtectionMs: number;
  dryRun?: boolean;
  now?: number;
  /**
   * Walk the store only if a snapshot went away: after a sync that published
   * nothing, no blob can have become unreferenced, and walking a large store
   * would make a no-op resync slow.
   */
  onlyIfPruned?: boolean;
}

export interface GcReport {
  readonly dryRun: boolean;
  readonly snapshotsRemoved: string[];
  readonly blobsRemoved: number;
  readonly bytesFreed: number;
  readonly partialsRemoved: number;
  readonly partialBytesFreed: number;
}

/** Records what a sync selected, for collectGarbage (atomic: a crash leaves the old list or the new). */
export async function writeWanted(layout: Layout, sha256s: Iterable<string>): Promise<void> {
  await mkdir(layout.stateDir, { recursive: true });
  await writeFileAtomic(layout.wantedFile, JSON.stringify({ sha256: [...new Set(sha256s)].sort() }) + '\n');
}

export async function readWanted(layout: Layout): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(layout.wantedFile, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    throw err;
  }
  let list: unknown;
  try {
    list = (JSON.parse(text) as { sha256?: unknown }).sha256;
  } catch {
    list = undefined;
  }
  // Refusing is safer than guessing: without the list gc could delete what the next sync needs.
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) {
    throw new Error(`${layout.wantedFile} is not a list of sha256s; delete it and run sync again`);
  }
  return list as string[];
}

/**
 * Keeps the newest snapshots, then deletes every blob no kept snapshot
 * lists, stale partial files and leftovers of interrupted publishes. Runs
 * under the dataDir lock, so no sync is adding blobs meanwhile.
 */
export async function collectGarbage(opts: GcOptions): Promise<GcReport> {
  const { layout, store } = opts;
  const now = opts.now ?? Date.now();
  const dry = opts.dryRun ?? false;
  let snapshotsRemoved: string[] = [];
  let kept: SnapshotManifest[] | undefined;
  if (dry) {
    const manifests = await keptManifests(layout);
    const ids = manifests.map((m) => m.id).sort();
    const doomed = new Set(ids.slice(0, Math.max(0, ids.length - opts.keepSnapshots)));
    const cur = await currentSnapshotId(layout);
    if (cur) doomed.delete(cur);
    snapshotsRemoved = [...doomed];
    kept = manifests.filter((m) => !doomed.has(m.id));
  } else {
    snapshotsRemoved = await pruneSnapshots(layout, opts.keepSnapshots);
    await removeLeftovers(layout);
  }
  // Read even when the store is not walked: a damaged list is reported, not silently ignored.
  const wanted = await readWanted(layout);

  let blobsRemoved = 0;
  let bytesFreed = 0;
  const walk = !opts.onlyIfPruned || snapshotsRemoved.length > 0;
  if (walk) {
    // Read after pruning, and only when walking: each manifest lists every file (40,000 at 10,000 products).
    kept ??= await keptManifests(layout);
    // Files the last sync selected but could not publish yet (a version missing one item):
    // deleting them would make the next sync download them again.
    const referenced = new Set<string>(wanted);
    for (const m of kept) for (const f of Object.values(m.files)) referenced.add(f.sha256);
    for await (const b of store.list()) {
      if (referenced.has(b.sha256)) continue;
      blobsRemoved++;
      bytesFreed += b.size;
      if (!dry) await store.remove(b.sha256);
    }
  }

  let partialsRemoved = 0;
  let partialBytesFreed = 0;
  const partials = await readdir(layout.partialDir).catch(() => [] as string[]);
  for (const name of partials) {
    const file = join(layout.partialDir, name);
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile() || now - st.mtimeMs < opts.partialProtectionMs) continue;
    partialsRemoved++;
    partialBytesFreed += st.size;
    if (!dry) await unlink(file).catch(() => undefined);
  }
  return { dryRun: dry, snapshotsRemoved, blobsRemoved, bytesFreed, partialsRemoved, partialBytesFreed };
}

/** Half-built snapshots and temp files left by a crash. */
async function removeLeftovers(layout: Layout): Promise<void> {
  const names = await readdir(layout.snapshotsDir).catch(() => [] as string[]);
  for (const n of names) {
    if (n.startsWith('.building-')) await rm(join(layout.snapshotsDir, n), { recursive: true, force: true });
  }
  const manifests = await readdir(layout.manifestsDir).catch(() => [] as string[]);
  for (const n of manifests) {
    if (isTempName(n)) await unlink(join(layout.manifestsDir, n)).catch(() => undefined);
  }
  // Files and links half-made by a kill (the `current` and `bootloaders` switches, the wanted list).
  for (const dir of [layout.dataDir, layout.stateDir]) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) if (isTempName(n)) await unlink(join(dir, n)).catch(() => undefined);
  }
}
