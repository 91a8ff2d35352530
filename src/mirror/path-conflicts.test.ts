import { describe, expect, it } from 'vitest';
import type { ProductsDocument } from '../simplestreams/types.js';
import type { PublishContent } from './next-tree.js';
import { leaveOutPathConflicts, metadataPaths } from './path-conflicts.js';

const SHA = (c: string) => c.repeat(64);

function content(contentId: string, versions: Record<string, Record<string, string>>): PublishContent {
  const doc: ProductsDocument = {
    format: 'products:1.0',
    content_id: contentId,
    products: {
      p: {
        versions: Object.fromEntries(
          Object.entries(versions).map(([v, items]) => [
            v,
            { items: Object.fromEntries(Object.entries(items).map(([name, path]) => [name, { path, sha256: SHA(name[0]!), size: 1 }])) },
          ]),
        ),
      },
    },
  };
  return { contentId, source: 's', basePath: `streams/v1/${contentId}`, entry: {}, doc };
}

describe('leaveOutPathConflicts', () => {
  it('lists the metadata of every content, the index and the keyrings', () => {
    expect(metadataPaths([{ basePath: 'streams/v1/c' }])).toEqual([
      'streams/v1/index.json',
      'streams/v1/index.json.gpg',
      'streams/v1/index.sjson',
      'keyring.gpg',
      'keyring.asc',
      'streams/v1/c.json',
      'streams/v1/c.sjson',
      'streams/v1/c.json.gpg',
    ]);
  });

  it.each([
    ['streams', 'streams is a folder of the tree (it holds other files)'],
    ['streams/v1', 'streams/v1 is a folder of the tree (it holds other files)'],
    ['streams/v1/c.sjson', 'streams/v1/c.sjson is a metadata file of the tree'],
    ['streams/v1/index.json/x', 'streams/v1/index.json is a file of the tree, so streams/v1/index.json/x cannot be inside it'],
    ['a/b/x', 'a/b is a file of the tree, so a/b/x cannot be inside it'],
    ['a', 'a is a folder of the tree (it holds other files)'],
  ])('leaves out the version with an item at %s', (path, reason) => {
    const c = content('c', { '1': { k: 'a/b' }, '2': { k: 'a/b', m: path } });
    const r = leaveOutPathConflicts([c]);
    expect(r.conflicts).toEqual([{ source: 's', contentId: 'c', productId: 'p', version: '2', path, reason }]);
    expect(Object.keys(r.contents[0]!.doc.products.p!.versions)).toEqual(['1']);
  });

  it('keeps items shared by versions (same path, same content), and the contents untouched when nothing clashes', () => {
    const c = content('c', { '1': { k: 'a/b', m: 'a/c' }, '2': { k: 'a/b', m: 'a/d' } });
    const r = leaveOutPathConflicts([c]);
    expect(r.conflicts).toEqual([]);
    expect(r.contents[0]).toBe(c);
  });

  it('drops a product and a content left empty', () => {
    const r = leaveOutPathConflicts([content('c', { '1': { k: 'streams' } })]);
    expect(r.contents).toEqual([]);
    expect(r.conflicts.map((x) => x.path)).toEqual(['streams']);
  });
});
