import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ProductsDocument } from '../simplestreams/types.js';
import type { SnapshotManifest } from './manifest.js';

/**
 * OS/RELEASE/ARCH/SUBARCH/KFLAVOR/FTYPE → the newest file of that product the
 * snapshot lists, read from the snapshot's own products files: what boot
 * templates name images by.
 */
export type ImageIndex = ReadonlyMap<string, { readonly sha256: string; readonly ftype: string }>;

const FIELDS = ['os', 'release', 'arch', 'subarch', 'kflavor'] as const;

export async function buildImageIndex(snapshotRoot: string, manifest: SnapshotManifest): Promise<ImageIndex> {
  const out = new Map<string, { sha256: string; ftype: string; version: string }>();
  for (const c of manifest.contents) {
    const doc = JSON.parse(await readFile(join(snapshotRoot, `${c.basePath}.json`), 'utf8')) as ProductsDocument;
    for (const product of Object.values(doc.products ?? {})) {
      const fields = FIELDS.map((k) => {
        const v = (product as Record<string, unknown>)[k] ?? (doc as Record<string, unknown>)[k];
        return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
      });
      if (fields.some((f) => f === undefined)) continue;
      for (const [version, v] of Object.entries(product.versions ?? {})) {
        for (const item of Object.values(v.items ?? {})) {
          const file = item.ftype === undefined ? undefined : manifest.files[item.path];
          if (!file || item.ftype === undefined) continue;
          const key = [...fields, item.ftype].join('/');
          const known = out.get(key);
          // Byte order of version keys, as the sync keeps versions.
          if (!known || version > known.version) out.set(key, { sha256: file.sha256, ftype: item.ftype, version });
        }
      }
    }
  }
  return out;
}
