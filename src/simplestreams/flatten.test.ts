import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flattenProducts } from './flatten.js';
import type { ProductsDocument } from './types.js';

const sample = (name: string) =>
  JSON.parse(readFileSync(join(import.meta.dirname, '../../test/fixtures', name), 'utf8')) as ProductsDocument;

const SHA = 'f'.repeat(64);

describe('flattenProducts', () => {
  it('yields every item of the real v3 sample with inherited fields', () => {
    const items = flattenProducts(sample('stable-v3-download.json'));
    expect(items).toHaveLength(4 * 2 * 4);
    const kernel = items.find(
      (i) => i.productId === 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04' && i.versionName === '20250709' && i.itemName === 'boot-kernel',
    )!;
    expect(kernel.contentId).toBe('com.ubuntu.maas:stable:v3:download');
    expect(kernel.path).toBe('noble/amd64/20250709/ga-24.04/generic/boot-kernel');
    expect(kernel.fields).toEqual({
      // the whole top level, as products_exdata(include_top=True) takes it
      content_id: 'com.ubuntu.maas:stable:v3:download',
      datatype: 'image-ids',
      format: 'products:1.0',
      updated: 'Thu, 24 Jul 2025 09:01:43 +0000',
      // product
      arch: 'amd64',
      kflavor: 'generic',
      krel: 'noble',
      label: 'stable',
      os: 'ubuntu',
      release: 'noble',
      release_codename: 'Noble Numbat',
      release_title: '24.04 LTS',
      subarch: 'ga-24.04',
      subarches: expect.stringMatching(/^generic,hwe-p,.*,ga-24\.04$/),
      support_eol: '2029-05-31',
      support_esm_eol: '2034-04-25',
      version: '24.04',
      product_name: 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04',
      version_name: '20250709',
      // item
      ftype: 'boot-kernel',
      kpackage: 'linux-generic',
      path: kernel.path,
      sha256: kernel.sha256,
      size: kernel.size,
      item_name: 'boot-kernel',
    });
  });

  it('gives bootloader items their product fields', () => {
    const items = flattenProducts(sample('stable-bootloader-download.json'));
    const shim = items.find((i) => i.productId.endsWith('grub-efi:uefi:arm64') && i.itemName === 'shim-signed')!;
    expect(shim.fields).toMatchObject({ arch: 'arm64', 'bootloader-type': 'uefi', os: 'grub-efi', ftype: 'archive.tar.xz', src_package: 'shim-signed' });
  });

  it('lets a lower level override a higher one, level by level', () => {
    const doc: ProductsDocument = {
      format: 'products:1.0',
      content_id: 'c',
      label: 'top',
      arch: 'top',
      os: 'top',
      products: {
        p: {
          label: 'product',
          arch: 'product',
          versions: {
            v: { label: 'version', items: { i: { path: 'a/b', sha256: SHA, size: 1, label: 'item' }, j: { path: 'a/c', sha256: SHA, size: 2 } } },
          },
        },
      },
    };
    const [i, j] = flattenProducts(doc);
    expect(i!.fields).toMatchObject({ label: 'item', arch: 'product', os: 'top' });
    expect(j!.fields).toMatchObject({ label: 'version', arch: 'product', os: 'top', size: 2 });
  });

  it('sets each level name after that level, so a deeper field can still override it (as products_exdata does)', () => {
    const doc: ProductsDocument = {
      format: 'products:1.0',
      content_id: 'c',
      item_name: 'top',
      products: { p: { product_name: 'own', versions: { v: { product_name: 'from-version', items: { i: { path: 'a', sha256: SHA, size: 1 } } } } } },
    };
    const [item] = flattenProducts(doc);
    expect(item!.fields.product_name).toBe('from-version');
    expect(item!.fields.item_name).toBe('i');
  });

  it('takes strings and numbers, spells booleans as python does, and drops objects, arrays and null', () => {
    const doc = {
      format: 'products:1.0',
      content_id: 'c',
      flag: true,
      _aliases: { x: { y: 'z' } },
      products: {
        p: {
          off: false,
          list: ['x'],
          none: null,
          ratio: 1.5,
          versions: { v: { items: { i: { path: 'a', sha256: SHA, size: 0, obj: { k: 'v' } } } } },
        },
      },
    } as unknown as ProductsDocument;
    const [item] = flattenProducts(doc);
    expect(item!.fields).toMatchObject({ flag: 'True', off: 'False', ratio: 1.5, size: 0 });
    for (const k of ['_aliases', 'list', 'none', 'obj', 'products', 'versions', 'items']) expect(item!.fields).not.toHaveProperty(k);
  });

  it('keeps a field named __proto__ as a plain field', () => {
    const doc = JSON.parse(
      `{"format":"products:1.0","content_id":"c","products":{"p":{"__proto__":"x","versions":{"v":{"items":{"i":{"path":"a","sha256":"${SHA}","size":1}}}}}}}`,
    ) as ProductsDocument;
    const [item] = flattenProducts(doc);
    expect(Object.getOwnPropertyDescriptor(item!.fields, '__proto__')?.value).toBe('x');
    expect(Object.getPrototypeOf(item!.fields)).toBe(Object.prototype);
  });

  it('yields nothing for products without versions or versions without items', () => {
    const doc: ProductsDocument = {
      format: 'products:1.0',
      content_id: 'c',
      products: { p: { versions: {} }, q: { versions: { v: { items: {} } } } },
    };
    expect(flattenProducts(doc)).toEqual([]);
  });
});
