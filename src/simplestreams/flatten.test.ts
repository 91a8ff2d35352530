import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flattenProducts } from './flatten.js';
import type { ProductsDocument } from './types.js';

const sample = (name: string) =>
  JSON.parse(readFileSync(join(import.meta.dirname, '../../test/fixtures', name), 'utf8')) as ProductsDocument;

describe('flattenProducts', () => {
  it('inherits top → product → version → item on the real v3 sample', () => {
    const items = flattenProducts(sample('stable-v3-download.json'));
    expect(items).toHaveLength(4 * 2 * 4);
    const kernel = items.find((i) => i.productId.endsWith('24.04:amd64:ga-24.04') && i.versionName === '20250709' && i.itemName === 'boot-kernel')!;
    expect(kernel.fields).toMatchObject({
      content_id: 'com.ubuntu.maas:stable:v3:download',
      datatype: 'image-ids',
      format: 'products:1.0',
      arch: 'amd64',
      release: 'noble',
      os: 'ubuntu',
      ftype: 'boot-kernel',
      kpackage: 'linux-generic',
      product_name: 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04',
      version_name: '20250709',
      item_name: 'boot-kernel',
    });
    expect(kernel.fields.size).toBe(kernel.size);
    expect(kernel.fields).not.toHaveProperty('versions');
    expect(kernel.fields).not.toHaveProperty('products');
  });

  it('lets a lower level override, and keeps only strings and numbers', () => {
    const doc: ProductsDocument = {
      format: 'products:1.0',
      content_id: 'c',
      label: 'top',
      flag: true as unknown as string,
      products: {
        p: {
          label: 'product',
          list: ['x'] as unknown as string,
          versions: { v: { label: 'version', items: { i: { path: 'a/b', sha256: 'f'.repeat(64), size: 1, label: 'item' } } } },
        },
      },
    };
    const [item] = flattenProducts(doc);
    expect(item!.fields.label).toBe('item');
    expect(item!.fields).not.toHaveProperty('flag');
    expect(item!.fields).not.toHaveProperty('list');
  });
});
