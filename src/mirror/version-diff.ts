import type { PublishContent } from './next-tree.js';

export interface VersionChange {
  readonly action: '+' | '-';
  readonly contentId: string;
  readonly productId: string;
  readonly version: string;
  readonly bytes: number;
}

/** Versions the next snapshot adds (+) and drops (−) against the current one. */
export function diffVersions(
  before: ReadonlyMap<string, PublishContent> | undefined,
  after: readonly PublishContent[],
): VersionChange[] {
  const key = (c: string, p: string, v: string) => JSON.stringify([c, p, v]);
  const collect = (contents: Iterable<PublishContent>) => {
    const m = new Map<string, VersionChange>();
    for (const c of contents) {
      for (const [productId, product] of Object.entries(c.doc.products)) {
        for (const [version, v] of Object.entries(product.versions)) {
          const paths = new Map<string, number>();
          for (const i of Object.values(v.items)) paths.set(i.path, i.size);
          const bytes = [...paths.values()].reduce((a, b) => a + b, 0);
          m.set(key(c.contentId, productId, version), { action: '+', contentId: c.contentId, productId, version, bytes });
        }
      }
    }
    return m;
  };
  const old = collect(before?.values() ?? []);
  const now = collect(after);
  const out: VersionChange[] = [];
  for (const [k, c] of now) if (!old.has(k)) out.push(c);
  for (const [k, c] of old) if (!now.has(k)) out.push({ ...c, action: '-' });
  return out.sort((a, b) =>
    a.productId === b.productId ? (a.version < b.version ? -1 : 1) : a.productId < b.productId ? -1 : 1,
  );
}
