import type { BlobStore } from '../../store/blobs.js';
import type { ContentBuild } from '../next-tree.js';
import type { Published } from '../published.js';
import type { WantedFile } from '../select.js';

export interface Inventory {
  /** sha256s the store holds, among those the next snapshot may list. */
  readonly held: Set<string>;
  /** Wanted files the store lacks, largest first. */
  readonly missing: WantedFile[];
  readonly bytesToFetch: number;
  /**
   * A file the current snapshot lists as held but the store lost (verify quarantined it): once
   * fetched again, the tree needs republishing even though the metadata did not change.
   */
  readonly repaired: boolean;
}

/** Phase 3: what the store already holds of everything the next snapshot may list, and what it lacks. */
export async function takeInventory(
  store: BlobStore,
  builds: readonly ContentBuild[],
  wanted: ReadonlyMap<string, WantedFile>,
  previous: Published | undefined,
): Promise<Inventory> {
  const candidates = new Map<string, number>();
  for (const f of wanted.values()) candidates.set(f.sha256, f.size);
  for (const c of previous?.contents.values() ?? []) {
    for (const p of Object.values(c.doc.products))
      for (const v of Object.values(p.versions)) for (const i of Object.values(v.items)) candidates.set(i.sha256, i.size);
  }
  for (const b of builds) if (b.onDemand) for (const v of b.selected) for (const f of v.files) candidates.set(f.sha256, f.size);
  // Absent files cost no stat: a first sync of 10,000 products lacks all 40,000.
  const held = await store.holding(candidates);
  // Largest first: the long transfers start early and the queue ends together.
  const missing = [...wanted.values()].filter((f) => !held.has(f.sha256)).sort((a, b) => b.size - a.size);
  const repaired = previous ? Object.values(previous.manifest.files).some((f) => f.held && !held.has(f.sha256)) : false;
  return { held, missing, bytesToFetch: missing.reduce((n, f) => n + f.size, 0), repaired };
}
