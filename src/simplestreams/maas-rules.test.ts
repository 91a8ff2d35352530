import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateForMaas } from './maas-rules.js';
import type { IndexDocument, ProductsDocument } from './types.js';

const UPDATED = 'Thu, 24 Jul 2025 09:01:43 +0000';
const SAMPLES = ['stable-v3-download.json', 'stable-bootloader-download.json', 'stable-centos-bases-download.json'];

/** The real samples wrapped in an index, as a published tree would hold them. */
function tree(): { index: IndexDocument; products: Map<string, ProductsDocument> } {
  const index: IndexDocument = { format: 'index:1.0', updated: UPDATED, index: {} };
  const products = new Map<string, ProductsDocument>();
  for (const name of SAMPLES) {
    const doc = JSON.parse(readFileSync(join(import.meta.dirname, '../../test/fixtures', name), 'utf8')) as ProductsDocument;
    const path = `streams/v1/${doc.content_id}.json`;
    index.index[doc.content_id] = { datatype: 'image-ids', format: 'products:1.0', path, products: Object.keys(doc.products).sort(), updated: UPDATED };
    products.set(path, doc);
  }
  return { index, products };
}

const V3 = 'streams/v1/com.ubuntu.maas:stable:v3:download.json';
const BL = 'streams/v1/com.ubuntu.maas:stable:1:bootloader-download.json';
const CENTOS = 'streams/v1/com.ubuntu.maas:stable:centos-bases-download.json';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const GRUB = 'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64';
const C8 = 'com.ubuntu.maas.stable:centos-bases:8:amd64';

describe('validateForMaas', () => {
  it('finds nothing wrong with the real samples', () => {
    const { index, products } = tree();
    expect(validateForMaas(index, products)).toEqual([]);
  });

  const cases: [string, (t: ReturnType<typeof tree>) => void, RegExp][] = [
    ['a missing product field', (t) => delete t.products.get(V3)!.products[NOBLE]!.release_title, /release_title is missing/],
    ['a missing kernel', (t) => delete t.products.get(V3)!.products[NOBLE]!.versions['20250709']!.items['boot-kernel'], /item boot-kernel is missing/],
    ['no squashfs nor root-image.gz', (t) => delete t.products.get(V3)!.products[NOBLE]!.versions['20250709']!.items.squashfs, /needs a squashfs or root-image.gz/],
    ['a CentOS version without root-tgz', (t) => {
      const items = t.products.get(CENTOS)!.products[C8]!.versions['20211104_01']!.items;
      items['root-tgz']!.ftype = 'root-tgz';
      delete items.manifest;
    }, /item manifest is missing/],
    ['a bootloader without src_version', (t) => delete t.products.get(BL)!.products[GRUB]!.versions['20231004.0']!.items['grub2-signed']!.src_version, /src_version is missing/],
    ['a bootloader item of the wrong ftype', (t) => (t.products.get(BL)!.products[GRUB]!.versions['20231004.0']!.items['shim-signed']!.ftype = 'tar'), /ftype must be archive.tar.xz/],
    ['a bootloader missing arches', (t) => delete t.products.get(BL)!.products[GRUB]!.arches, /arches is missing/],
    ['a bad image product id', (t) => {
      const doc = t.products.get(V3)!;
      doc.products['com.ubuntu.maas.stable:boot:24.04:amd64'] = doc.products[NOBLE]!;
      delete doc.products[NOBLE];
      t.index.index['com.ubuntu.maas:stable:v3:download']!.products = Object.keys(doc.products).sort();
    }, /must contain ":v3:"/],
    ['a bad date', (t) => (t.products.get(V3)!.updated = '2025-07-24'), /not an RFC 2822 date/],
    ['a product without versions', (t) => (t.products.get(V3)!.products[NOBLE]!.versions = {}), /has no versions/],
    ['an index that lists other products', (t) => t.index.index['com.ubuntu.maas:stable:v3:download']!.products!.pop(), /only in the file/],
    ['an entry without format', (t) => delete t.index.index['com.ubuntu.maas:stable:v3:download']!.format, /format must be "products:1.0"/],
    ['a wrong datatype', (t) => (t.products.get(BL)!.datatype = 'stuff'), /datatype must be/],
    ['a shared path with another sha256', (t) => {
      const v = t.products.get(V3)!.products[NOBLE]!.versions['20250709']!;
      v.items.manifest!.path = v.items.squashfs!.path;
    }, /also listed by/],
    ['a missing products file', (t) => t.products.delete(CENTOS), /products file .* is missing/],
  ];

  it.each(cases)('reports %s, and only that', (_what, mutate, expected) => {
    const t = tree();
    mutate(t);
    const problems = validateForMaas(t.index, t.products);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toMatch(expected);
  });
});
