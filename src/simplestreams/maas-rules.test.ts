import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateForMaas } from './maas-rules.js';
import type { IndexDocument, Item, ProductsDocument } from './types.js';

const UPDATED = 'Thu, 24 Jul 2025 09:01:43 +0000';
const SAMPLES = ['stable-v3-download.json', 'stable-bootloader-download.json', 'stable-centos-bases-download.json'];

interface Tree {
  index: IndexDocument;
  products: Map<string, ProductsDocument>;
}

const load = (name: string) => JSON.parse(readFileSync(join(import.meta.dirname, '../../test/fixtures', name), 'utf8')) as ProductsDocument;

/** The real samples wrapped in an index, as a published tree holds them. */
function tree(samples = SAMPLES, ext = '.json'): Tree {
  const index: IndexDocument = { format: 'index:1.0', updated: UPDATED, index: {} };
  const products = new Map<string, ProductsDocument>();
  for (const name of samples) {
    const doc = load(name);
    doc.updated ??= UPDATED;
    const path = `streams/v1/${doc.content_id}${ext}`;
    index.index[doc.content_id] = { datatype: 'image-ids', format: 'products:1.0', path, products: Object.keys(doc.products).sort(), updated: UPDATED };
    products.set(path, doc);
  }
  return { index, products };
}

const V3_ID = 'com.ubuntu.maas:stable:v3:download';
const V3 = `streams/v1/${V3_ID}.json`;
const BL = 'streams/v1/com.ubuntu.maas:stable:1:bootloader-download.json';
const CENTOS = 'streams/v1/com.ubuntu.maas:stable:centos-bases-download.json';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const GRUB = 'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64';
const C8 = 'com.ubuntu.maas.stable:centos-bases:8:amd64';

const noble = (t: Tree) => t.products.get(V3)!.products[NOBLE]!;
const nobleItems = (t: Tree, v = '20250709') => noble(t).versions[v]!.items;
const grubItems = (t: Tree) => t.products.get(BL)!.products[GRUB]!.versions['20231004.0']!.items;
const c8Items = (t: Tree) => t.products.get(CENTOS)!.products[C8]!.versions['20211104_01']!.items;
const P_NOBLE = `${V3} products["${NOBLE}"]`;
const V_NOBLE = `${P_NOBLE}.versions["20250709"]`;
const V_GRUB = `${BL} products["${GRUB}"].versions["20231004.0"]`;
const V_C8 = `${CENTOS} products["${C8}"].versions["20211104_01"]`;

/** Moves a product to another id, in the file and in the index. */
function rename(t: Tree, file: string, from: string, to: string) {
  const doc = t.products.get(file)!;
  doc.products[to] = doc.products[from]!;
  delete doc.products[from];
  t.index.index[doc.content_id]!.products = Object.keys(doc.products).sort();
}

describe('validateForMaas on real metadata', () => {
  it('finds nothing wrong with the real samples, under .json or .sjson paths', () => {
    const t = tree();
    expect(validateForMaas(t.index, t.products)).toEqual([]);
    const s = tree(SAMPLES, '.sjson');
    expect(validateForMaas(s.index, s.products)).toEqual([]);
  });

  it('rejects the real file that mixes kinds of products (and nothing else about it)', () => {
    const t = tree(['mixed-products.json']);
    expect(validateForMaas(t.index, t.products)).toEqual([
      { where: V3, message: expect.stringMatching(/mixes kinds of products \(2 multi-file, 1 bootloader, 1 single-file\).*rejects/) },
    ]);
  });

  it('passes the accepted variants: root-image.gz for squashfs, v2/v3+platform/uppercase ids, null optionals, a shared path with the same bytes', () => {
    const t = tree();
    const items = nobleItems(t);
    items['root-image.gz'] = { ...items.squashfs!, ftype: 'root-image.gz', path: 'noble/amd64/20250709/root-image.gz' };
    delete items.squashfs;
    noble(t).kflavor = null;
    noble(t).support_eol = null;
    items['boot-kernel']!.kpackage = null;
    items['squashfs-again'] = { ...items['root-image.gz']! };
    rename(t, V3, 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04', 'com.ubuntu.maas.stable:v2:boot:22.04:amd64:ga-22.04');
    rename(t, V3, 'com.ubuntu.maas.stable:v3:boot:22.04:arm64:ga-22.04', 'com.ubuntu.maas.stable:v3+platform:boot:22.04:arm64:x');
    rename(t, V3, 'com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04', 'com.ubuntu.maas.stable:V3:boot:24.04:arm64:ga-24.04');
    expect(validateForMaas(t.index, t.products)).toEqual([]);
  });
});

type Case = [string, (t: Tree) => void, string, RegExp];

const cases: Case[] = [
  // index
  ['an index without updated', (t) => delete t.index.updated, 'index', /^updated is missing$/],
  ['an index with no entries', (t) => (t.index.index = {}), 'index', /^has no entries$/],
  ['an entry without format', (t) => delete t.index.index[V3_ID]!.format, `index["${V3_ID}"]`, /format must be "products:1.0"/],
  ['an entry with a bad datatype', (t) => (t.index.index[V3_ID]!.datatype = 'images'), `index["${V3_ID}"]`, /datatype must be image-ids or image-downloads/],
  ['an entry dated without seconds', (t) => (t.index.index[V3_ID]!.updated = 'Wed, 25 Jun 2025 11:01 GMT'), `index["${V3_ID}"]`, /not an RFC 2822 date/],
  ['an entry without products', (t) => delete t.index.index[V3_ID]!.products, `index["${V3_ID}"]`, /products must be a list/],
  ['an entry with a "name"', (t) => (t.index.index[V3_ID]!.name = 'x'), `index["${V3_ID}"]`, /"name" field/],
  ['an entry whose file was not given', (t) => t.products.delete(CENTOS), 'index["com.ubuntu.maas:stable:centos-bases-download"]', /no products file was given/],
  ['an entry with an unsafe path', (t) => {
    const doc = t.products.get(V3)!;
    t.products.delete(V3);
    t.products.set('../v3.json', doc);
    t.index.index[V3_ID]!.path = '../v3.json';
  }, `index["${V3_ID}"]`, /path "\.\.\/v3\.json" is unsafe: it has a "\.\." segment/],
  ['an index that misses a product', (t) => t.index.index[V3_ID]!.products!.pop(), `index["${V3_ID}"]`, /misses 1 product\(s\) the file has \(com\.ubuntu\.maas\.stable:v3:boot:24\.04:arm64:ga-24\.04\)/],
  ['an index that lists a product the file lacks', (t) => t.index.index[V3_ID]!.products!.push('x:v3:y'), `index["${V3_ID}"]`, /lists 1 product\(s\) the file does not have \(x:v3:y\)/],
  ['an index that lists a product twice', (t) => t.index.index[V3_ID]!.products!.push(NOBLE), `index["${V3_ID}"]`, /more than once/],
  // products file
  ['a file without updated', (t) => delete t.products.get(V3)!.updated, V3, /^updated is missing$/],
  ['a file with an ISO date', (t) => (t.products.get(V3)!.updated = '2025-07-24T09:01:43Z'), V3, /not an RFC 2822 date/],
  ['a file with a wrong day name', (t) => (t.products.get(V3)!.updated = 'Fri, 24 Jul 2025 09:01:43 +0000'), V3, /not an RFC 2822 date/],
  ['a file with a bad datatype', (t) => (t.products.get(BL)!.datatype = 'stuff'), BL, /datatype must be image-ids or image-downloads/],
  ['a file without datatype', (t) => delete t.products.get(BL)!.datatype, BL, /datatype must be/],
  ['a file with another content_id', (t) => (t.products.get(V3)!.content_id = 'other'), V3, /content_id is "other", but the index lists the file as/],
  ['a file with no products', (t) => {
    t.products.get(CENTOS)!.products = {};
    t.index.index['com.ubuntu.maas:stable:centos-bases-download']!.products = [];
  }, CENTOS, /has no products/],
  ['a file that mixes kinds', (t) => {
    const grub = t.products.get(BL)!.products[GRUB]!;
    t.products.get(V3)!.products['com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64:copy'] = structuredClone(grub);
    t.index.index[V3_ID]!.products = Object.keys(t.products.get(V3)!.products).sort();
  }, V3, /mixes kinds of products \(4 multi-file, 1 bootloader\)/],
  // image products
  ['a missing product field', (t) => delete noble(t).release_title, P_NOBLE, /^release_title is missing$/],
  ['a field set only at the top level', (t) => {
    delete noble(t).subarches;
    t.products.get(V3)!.subarches = 'generic';
  }, P_NOBLE, /subarches is only set at the top level; MAAS 3.8 reads it from the product itself/],
  ['a numeric version', (t) => (noble(t).version = 24.04), P_NOBLE, /version must be a non-empty string, not 24.04/],
  ['an empty label', (t) => (noble(t).label = ''), P_NOBLE, /label must be a non-empty string/],
  ['a numeric kflavor', (t) => (noble(t).kflavor = 1), P_NOBLE, /kflavor must be a string/],
  ['a support_eol that is no date', (t) => (noble(t).support_eol = '2029-02-30'), P_NOBLE, /support_eol "2029-02-30" is not a YYYY-MM-DD date/],
  ['a product_name field', (t) => (noble(t).product_name = 'x'), P_NOBLE, /"product_name" field/],
  ['an image id without :v3:', (t) => rename(t, V3, NOBLE, 'com.ubuntu.maas.stable:boot:24.04:amd64:ga-24.04'), `${V3} products["com.ubuntu.maas.stable:boot:24.04:amd64:ga-24.04"]`, /must contain ":v3:"/],
  ['a product with zero versions', (t) => (noble(t).versions = {}), P_NOBLE, /^has no versions/],
  // image versions and items
  ['a missing kernel', (t) => delete nobleItems(t)['boot-kernel'], V_NOBLE, /^item boot-kernel is missing$/],
  ['a missing initrd in an older version', (t) => delete nobleItems(t, '20250618')['boot-initrd'], `${P_NOBLE}.versions["20250618"]`, /^item boot-initrd is missing$/],
  ['a missing manifest', (t) => delete nobleItems(t).manifest, V_NOBLE, /^item manifest is missing$/],
  ['no squashfs nor root-image.gz', (t) => delete nobleItems(t).squashfs, V_NOBLE, /needs a squashfs or a root-image.gz item/],
  ['a kernel whose ftype says initrd', (t) => (nobleItems(t)['boot-kernel']!.ftype = 'boot-initrd'), `${V_NOBLE}.items["boot-kernel"]`, /ftype must be boot-kernel, not "boot-initrd"/],
  ['a squashfs without ftype', (t) => delete nobleItems(t).squashfs!.ftype, `${V_NOBLE}.items["squashfs"]`, /ftype must be squashfs, not undefined/],
  ['a numeric kpackage', (t) => ((nobleItems(t)['boot-initrd'] as Item).kpackage = 5), `${V_NOBLE}.items["boot-initrd"]`, /kpackage must be a string/],
  ['a version-level support_esm_eol that is no date', (t) => (noble(t).versions['20250709']!.support_esm_eol = 'soon'), V_NOBLE, /support_esm_eol "soon"/],
  ['a version_name item', (t) => (nobleItems(t).version_name = { ...nobleItems(t).manifest! }), V_NOBLE, /"version_name" field or item/],
  ['a CentOS version without manifest', (t) => delete c8Items(t).manifest, V_C8, /^item manifest is missing$/],
  ['a CentOS version without root-tgz', (t) => delete c8Items(t)['root-tgz'], V_C8, /^item root-tgz is missing$/],
  ['a CentOS root-tgz of another ftype', (t) => (c8Items(t)['root-tgz']!.ftype = 'root-tbz'), `${V_C8}.items["root-tgz"]`, /ftype must be root-tgz, not "root-tbz"/],
  ['a single-file product without release_title', (t) => delete t.products.get(CENTOS)!.products[C8]!.release_title, `${CENTOS} products["${C8}"]`, /^release_title is missing$/],
  ['a root-dd image as a single-file version', (t) => {
    const items = c8Items(t);
    items['root-dd'] = { ...items['root-tgz']!, ftype: 'root-dd' };
    delete items['root-tgz'];
  }, V_C8, /root-dd.*MAAS 3.8's simplestreams models carry no root-dd/],
  ['two single-file products with one os/release/arch', (t) => {
    const doc = t.products.get(CENTOS)!;
    doc.products['site:rhel:8:amd64'] = structuredClone(doc.products[C8]!);
    t.index.index[doc.content_id]!.products = Object.keys(doc.products).sort();
  }, `${CENTOS} products["site:rhel:8:amd64"]`, /os\/release\/arch centos\/8\/amd64 of .*centos-bases:8:amd64.*could not tell them apart/],
  // bootloaders
  ['a bootloader without arches', (t) => delete t.products.get(BL)!.products[GRUB]!.arches, `${BL} products["${GRUB}"]`, /^arches is missing$/],
  ['a bootloader id without :1:', (t) => rename(t, BL, GRUB, 'com.ubuntu.maas.stable:2:grub-efi-signed:uefi:amd64'), `${BL} products["com.ubuntu.maas.stable:2:grub-efi-signed:uefi:amd64"]`, /must contain ":1:"/],
  ['a bootloader version without a bootloader item', (t) => {
    const items = grubItems(t);
    items.other = items['grub2-signed']!;
    delete items['grub2-signed'];
    delete items['shim-signed'];
  }, V_GRUB, /has none of the items grub2-signed, shim-signed, grub2, syslinux/],
  ['a bootloader item without src_version', (t) => delete grubItems(t)['grub2-signed']!.src_version, `${V_GRUB}.items["grub2-signed"]`, /^src_version is missing$/],
  ['a bootloader item of another ftype', (t) => (grubItems(t)['shim-signed']!.ftype = 'tar'), `${V_GRUB}.items["shim-signed"]`, /ftype must be archive.tar.xz, not "tar"/],
  // paths
  ['a shared path with another sha256', (t) => (nobleItems(t).manifest!.path = nobleItems(t).squashfs!.path), `${V_NOBLE}.items["squashfs"]`, /path noble\/amd64\/20250709\/squashfs is also used by .*items\["manifest"\] with another sha256 or size/],
  ['a shared path with another sha256 only', (t) => {
    const items = nobleItems(t);
    items.copy = { ...items.squashfs!, sha256: '0'.repeat(64) };
  }, `${V_NOBLE}.items["copy"]`, /is also used by .*items\["squashfs"\] with another sha256 or size/],
  ['a shared path with another size only', (t) => {
    const bl = grubItems(t)['grub2-signed']!;
    t.products.get(BL)!.products[GRUB]!.versions['20231004.0']!.items.copy = { ...bl, size: bl.size + 1 };
  }, `${V_GRUB}.items["copy"]`, /is also used by/],
  ['an item path that escapes', (t) => (nobleItems(t).squashfs!.path = 'noble/../../../etc/shadow'), `${V_NOBLE}.items["squashfs"]`, /is unsafe: it has a "\.\." segment/],
  ['an item path with a "?"', (t) => (nobleItems(t).squashfs!.path = 'noble/squashfs?v=1'), `${V_NOBLE}.items["squashfs"]`, /MAAS cannot fetch it/],
  ['an item path over the metadata', (t) => (nobleItems(t).squashfs!.path = 'streams/v1/index.sjson'), `${V_NOBLE}.items["squashfs"]`, /under streams\//],
  ['a path that is a file and a directory', (t) => (nobleItems(t).manifest!.path = `${nobleItems(t).squashfs!.path}/manifest`), `${V_NOBLE}.items["squashfs"]`, /is a file here but a directory/],
];

describe('validateForMaas, one broken rule at a time', () => {
  it.each(cases)('reports %s, and only that', (_what, mutate, where, message) => {
    const t = tree();
    mutate(t);
    expect(validateForMaas(t.index, t.products)).toEqual([{ where, message: expect.stringMatching(message) }]);
  });

  it('reports every problem, not only the first', () => {
    const t = tree();
    delete noble(t).arch;
    delete nobleItems(t)['boot-kernel'];
    t.index.updated = 'now';
    const problems = validateForMaas(t.index, t.products);
    expect(problems.map((p) => p.message)).toEqual([expect.stringMatching(/^updated/), 'arch is missing', 'item boot-kernel is missing']);
  });

  it('does not throw on documents that skipped parsing', () => {
    const t = tree();
    const doc = t.products.get(V3)! as unknown as Record<string, unknown>;
    doc.products = { a: null, b: { versions: { v: null } }, c: { versions: { v: { items: { i: 'x' } } } } };
    t.index.index[V3_ID]!.products = ['a', 'b', 'c'];
    expect(() => validateForMaas(t.index, t.products)).not.toThrow();
    expect(validateForMaas(t.index, t.products).length).toBeGreaterThan(3);
  });
});
