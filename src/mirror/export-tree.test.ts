import { describe, expect, it } from 'vitest';
import type { IndexDocument, ProductsDocument } from '../simplestreams/types.js';
import { renderExportTree } from './export-tree.js';
import type { PublishContent } from './next-tree.js';

const ID = 'com.ubuntu.maas:stable:v3:download';

function content(paths: string[]): PublishContent {
  const items = Object.fromEntries(paths.map((p, i) => [`i${i}`, { path: p, sha256: String(i).repeat(64), size: 1, ftype: 'squashfs' }]));
  const doc: ProductsDocument = { format: 'products:1.0', content_id: ID, products: { p: { versions: { '20250101': { items } } } } };
  return { contentId: ID, source: 's', basePath: `streams/v1/${ID}`, entry: { format: 'products:1.0' }, doc };
}
const index: IndexDocument = { format: 'index:1.0', updated: 'Thu, 24 Jul 2025 09:01:43 +0000', index: { [ID]: { path: `streams/v1/${ID}.json`, format: 'products:1.0' } } };

describe('export tree', () => {
  it('renames products files and odd item paths, and the index and items say so', () => {
    const t = renderExportTree(index, [content(['a/b:c/file?.img', 'a/plain'])]);
    expect(t.signed.index[ID]!.path).toBe('streams/v1/com.ubuntu.maas_stable_v3_download.sjson');
    expect(t.plain.index[ID]!.path).toBe('streams/v1/com.ubuntu.maas_stable_v3_download.json');
    expect(t.signed.updated).toBe(index.updated);
    const items = t.products[0]!.doc.products.p!.versions['20250101']!.items;
    expect(items.i0!.path).toBe('a/b_c/file_.img');
    expect(items.i1!.path).toBe('a/plain');
    expect(t.itemPaths.get('a/b:c/file?.img')).toBe('a/b_c/file_.img');
  });

  it('refuses two names that would meet on FAT (same after renaming, or differing only in case)', () => {
    expect(() => renderExportTree(index, [content(['x/a:b', 'x/a?b'])])).toThrow(/would share the name x\/a_b/);
    expect(() => renderExportTree(index, [content(['x/Kernel', 'x/kernel'])])).toThrow(/would share the name/);
  });
});
