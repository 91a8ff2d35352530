import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetadataError } from '../errors.js';
import { jsonTooDeepAt, METADATA_LIMITS } from './limits.js';
import { parseIndex, parseProducts } from './parse.js';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, '../../test/fixtures', name), 'utf8');
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const SHA = 'a'.repeat(64);

function errorOf(f: () => unknown): MetadataError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(MetadataError);
    return e as MetadataError;
  }
  throw new Error('expected a MetadataError, nothing was thrown');
}

const products = (items: unknown) =>
  JSON.stringify({ format: 'products:1.0', content_id: 'c', products: { p: { versions: { v: { items } } } } });

describe('parseIndex', () => {
  it('accepts the real indexes, keeping every field', () => {
    const idx = parseIndex(fixture('stable-index.json'), 'u');
    expect(Object.keys(idx.index)).toHaveLength(3);
    expect(idx.updated).toBe('Thu, 24 Jul 2025 08:01:49 +0000');
    expect(idx.index['com.ubuntu.maas:stable:v3:download']!.products).toHaveLength(4);
    expect(Object.keys(parseIndex(fixture('stable-index-signed-entries.json'), 'u').index)).toHaveLength(3);
  });

  it('accepts an already parsed document, a Buffer, and an entry without format or products', () => {
    const doc = { format: 'index:1.0', index: { a: { path: 'streams/v1/a.json', extra: { kept: true } } }, vendor: 'x' };
    const parsed = parseIndex(doc, 'u');
    expect(parsed).toBe(doc);
    expect(parsed.index.a!.extra).toEqual({ kept: true });
    expect(parseIndex(Buffer.from(JSON.stringify(doc)), 'u').vendor).toBe('x');
  });

  it.each([
    ['not JSON', '{', /is not valid JSON/],
    ['a BOM before the JSON', '\ufeff{"format":"index:1.0","index":{}}', /is not valid JSON/],
    ['an array', '[]', /\(top level\): expected an object, got an array/],
    ['a wrong format', '{"format":"index:2.0","index":{}}', /format: expected "index:1.0", got "index:2.0"/],
    ['no index', '{"format":"index:1.0"}', /index: expected an object, got nothing/],
    ['an index that is a list', '{"format":"index:1.0","index":[]}', /index: expected an object, got an array/],
    ['an entry without a path', '{"format":"index:1.0","index":{"a":{"products":[]}}}', /index\["a"\]\.path: expected a non-empty string, got nothing/],
    ['products that are not a list', '{"format":"index:1.0","index":{"a":{"path":"p","products":"x"}}}', /index\["a"\]\.products: expected a list/],
    ['a product id that is not a string', '{"format":"index:1.0","index":{"a":{"path":"p","products":["x",3]}}}', /index\["a"\]\.products\[1\]: expected a string, got 3/],
    ['a numeric updated', '{"format":"index:1.0","updated":1,"index":{}}', /updated: expected a string, got 1/],
  ])('refuses %s', (_what, text, message) => {
    const err = errorOf(() => parseIndex(text, 'http://m/streams/v1/index.json'));
    expect(err.message).toMatch(/^http:\/\/m\/streams\/v1\/index\.json: /);
    expect(err.message).toMatch(message);
  });

  it('refuses invalid UTF-8 bytes', () => {
    expect(errorOf(() => parseIndex(Buffer.from([0x7b, 0xff, 0x7d]), 'u')).message).toMatch(/not valid UTF-8/);
  });
});

describe('parseProducts', () => {
  it('accepts every real sample, keeping unknown fields', () => {
    for (const f of ['stable-v3-download.json', 'stable-bootloader-download.json', 'stable-centos-bases-download.json', 'mixed-products.json']) {
      expect(Object.keys(parseProducts(fixture(f), f).products).length).toBeGreaterThan(0);
    }
    const doc = parseProducts(fixture('stable-v3-download.json'), 'u');
    expect(doc.products[NOBLE]!.support_esm_eol).toBe('2034-04-25');
    expect(doc.products[NOBLE]!.versions['20250709']!.items['boot-kernel']!.kpackage).toBe('linux-generic');
  });

  it('names the JSON path of each of the first problems', () => {
    const doc = JSON.parse(fixture('stable-v3-download.json'));
    const v = doc.products[NOBLE].versions['20250709'];
    v.items.squashfs.sha256 = 'XYZ';
    v.items['boot-kernel'].size = -1;
    delete v.items.manifest.path;
    const err = errorOf(() => parseProducts(JSON.stringify(doc), 'http://u/p.json'));
    expect(err.url).toBe('http://u/p.json');
    expect(err.message).toContain(`products["${NOBLE}"].versions["20250709"].items["squashfs"].sha256: expected 64 hex digits (lowercase), got "XYZ"`);
    expect(err.message).toContain(`products["${NOBLE}"].versions["20250709"].items["boot-kernel"].size: expected a whole number of bytes, got -1`);
    expect(err.message).toContain(`products["${NOBLE}"].versions["20250709"].items["manifest"].path: expected a non-empty string, got nothing`);
  });

  it('reports only the first five problems, and how many more there are', () => {
    const items = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`i${i}`, { path: 'a', sha256: 'x', size: 1 }]));
    const err = errorOf(() => parseProducts(products(items), 'u'));
    expect(err.message.match(/expected 64 hex digits/g)).toHaveLength(5);
    expect(err.message).toMatch(/; and 3 more$/);
  });

  it.each([
    ['a wrong format', '{"format":"index:1.0","content_id":"c","products":{}}', /format: expected "products:1.0", got "index:1.0"/],
    ['no products', '{"format":"products:1.0","content_id":"c"}', /products: expected an object, got nothing/],
    ['no content id', '{"format":"products:1.0","products":{}}', /content_id: expected a non-empty string/],
    ['a product that is a string', '{"format":"products:1.0","content_id":"c","products":{"p":"x"}}', /products\["p"\]: expected an object, got "x"/],
    ['a product without versions', '{"format":"products:1.0","content_id":"c","products":{"p":{}}}', /products\["p"\]\.versions: expected an object, got nothing/],
    ['a version without items', '{"format":"products:1.0","content_id":"c","products":{"p":{"versions":{"v":{}}}}}', /versions\["v"\]\.items: expected an object, got nothing/],
    ['items as a list', products([]), /items: expected an object, got an array/],
    ['an item that is null', products({ i: null }), /items\["i"\]: expected an object, got null/],
    ['an uppercase sha256', products({ i: { path: 'a', sha256: SHA.toUpperCase(), size: 1 } }), /sha256: expected 64 hex digits/],
    ['a short sha256', products({ i: { path: 'a', sha256: SHA.slice(1), size: 1 } }), /sha256: expected 64 hex digits/],
    ['a fractional size', products({ i: { path: 'a', sha256: SHA, size: 1.5 } }), /size: expected a whole number of bytes, got 1.5/],
    ['a size as a string', products({ i: { path: 'a', sha256: SHA, size: '12' } }), /size: expected a whole number of bytes, got "12"/],
    ['a size past 2^53', products({ i: { path: 'a', sha256: SHA, size: 2 ** 53 } }), /size: expected a whole number of bytes/],
    ['an empty path', products({ i: { path: '', sha256: SHA, size: 1 } }), /path: expected a non-empty string, got ""/],
    ['a numeric ftype', products({ i: { path: 'a', sha256: SHA, size: 1, ftype: 3 } }), /ftype: expected a string, got 3/],
  ])('refuses %s', (_what, text, message) => {
    expect(errorOf(() => parseProducts(text, 'u')).message).toMatch(message);
  });

  it('accepts a zero size and products or versions that are empty (legal simplestreams, flagged later for MAAS)', () => {
    expect(parseProducts(products({ i: { path: 'a', sha256: SHA, size: 0 } }), 'u').content_id).toBe('c');
    expect(Object.keys(parseProducts('{"format":"products:1.0","content_id":"c","products":{}}', 'u').products)).toEqual([]);
  });
});

describe('metadata limits, checked before anything recursive', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

  it('refuses JSON nested 100,000 deep with MM_METADATA_INVALID, before JSON.parse', () => {
    const text = `{"format":"products:1.0","content_id":"c","products":{"p":{"x":${deep(100_000)},"versions":{}}}}`;
    const err = errorOf(() => parseProducts(text, 'http://u/p.json'));
    expect(err.code).toBe('MM_METADATA_INVALID');
    expect(err.message).toMatch(new RegExp(`^http://u/p.json: nests arrays and objects more than ${METADATA_LIMITS.maxDepth} deep \\(at character \\d+\\)`));
    expect(errorOf(() => parseIndex(deep(100_000), 'u')).message).toMatch(/more than 32 deep/);
  });

  it('counts only structure: brackets and escaped quotes inside strings do not nest', () => {
    const s = JSON.stringify('[{'.repeat(1000) + '\\"[[[');
    expect(jsonTooDeepAt(`{"a":${s},"b":[1,[2]]}`, 3)).toBe(-1);
    expect(jsonTooDeepAt(`{"a":${s},"b":[1,[[2]]]}`, 3)).toBeGreaterThan(0);
  });

  it('refuses an already parsed document nested too deep, without recursing', () => {
    let v: unknown = {};
    for (let i = 0; i < 100_000; i++) v = { v };
    expect(errorOf(() => parseIndex({ format: 'index:1.0', index: {}, x: v }, 'u')).message).toMatch(/more than 32 deep, far beyond/);
  });

  it('refuses too many products, versions, items and index entries', () => {
    const many = (n: number, f: (i: number) => unknown) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, f(i)]));
    const item = (i: number) => ({ path: `f/${i}`, sha256: SHA, size: 1 });
    const doc = (productsObj: unknown) => JSON.stringify({ format: 'products:1.0', content_id: 'c', products: productsObj });
    expect(errorOf(() => parseProducts(doc(many(METADATA_LIMITS.maxProducts + 1, () => ({ versions: {} }))), 'u')).message).toMatch(
      `lists more than ${METADATA_LIMITS.maxProducts} products`,
    );
    expect(errorOf(() => parseProducts(doc({ p: { versions: many(METADATA_LIMITS.maxVersions + 1, () => ({ items: {} })) } }), 'u')).message).toMatch(
      `lists more than ${METADATA_LIMITS.maxVersions} versions in products["p"]`,
    );
    expect(errorOf(() => parseProducts(doc({ p: { versions: { v: { items: many(METADATA_LIMITS.maxItemsPerVersion + 1, item) } } } }), 'u')).message).toMatch(
      `lists more than ${METADATA_LIMITS.maxItemsPerVersion} items in products["p"].versions["v"]`,
    );
    const versions = many(Math.ceil(METADATA_LIMITS.maxItems / 1000) + 1, () => ({ items: many(1000, item) }));
    expect(errorOf(() => parseProducts(doc({ p: { versions } }), 'u')).message).toMatch(`lists more than ${METADATA_LIMITS.maxItems} items,`);
    const index = { format: 'index:1.0', index: many(METADATA_LIMITS.maxIndexEntries + 1, (i) => ({ path: `streams/v1/${i}.json` })) };
    expect(errorOf(() => parseIndex(JSON.stringify(index), 'u')).message).toMatch(`lists more than ${METADATA_LIMITS.maxIndexEntries} index entries`);
  });
});
