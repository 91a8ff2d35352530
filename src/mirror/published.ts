import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IndexDocument, ProductsDocument } from '../simplestreams/types.js';
import type { Layout } from '../store/layout.js';
import { readManifest, type SnapshotManifest } from '../store/manifest.js';
import { currentSnapshotId } from '../store/snapshots.js';
import type { PublishContent } from './next-tree.js';

export interface Published {
  readonly manifest: SnapshotManifest;
  readonly contents: ReadonlyMap<string, PublishContent>;
}

/** The current snapshot as published: what a sync falls back on when it cannot refresh something. */
export async function readPublished(layout: Layout): Promise<Published | undefined> {
  const id = await currentSnapshotId(layout);
  if (!id) return undefined;
  const manifest = await readManifest(layout, id).catch(() => undefined);
  if (!manifest) return undefined;
  const root = layout.snapshot(id);
  const index = JSON.parse(await readFile(join(root, 'streams', 'v1', 'index.json'), 'utf8')) as IndexDocument;
  const contents = new Map<string, PublishContent>();
  for (const c of manifest.contents ?? []) {
    const entry = index.index[c.contentId];
    if (!entry) continue;
    const doc = JSON.parse(await readFile(join(root, `${c.basePath}.json`), 'utf8')) as ProductsDocument;
    contents.set(c.contentId, { contentId: c.contentId, source: c.source, basePath: c.basePath, entry, doc });
  }
  return { manifest, contents };
}
