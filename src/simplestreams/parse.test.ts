import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetadataError } from '../errors.js';
import { parseIndex, parseProducts } from './parse.js';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, '../../test/fixtures', name), 'utf8');

describe('parseIndex / parseProducts', () => {
  it('accept the real samples, keeping unknown fields', () => {
    expect(Object.keys(parseIndex(fixture('stable-index.json'), 'u').index)).toHaveLength(3);
    expect(Object.keys(parseIndex(fixture('stable-index-signed-entries.json'), 'u').index)).toHaveLength(3);
    for (const f of ['stable-v3-download.json', 'stable-bootloader-download.json', 'stable-centos-bases-download.json', 'mixed-products.json']) {
      const doc = parseProducts(fixture(f), f);
      expect(Object.keys(doc.products).length).toBeGreaterThan(0);
    }
    const doc = parseProducts(fixture('stable-v3-download.json'), 'u');
    expect(doc.products['com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04']!.support_esm_eol).toBe('2034-04-25');
  });

  it('names the JSON path of what is wrong', () => {
    const doc = JSON.parse(fixture('stable-v3-download.json'));
    const v = doc.products['com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'].versions['20250709'];
    v.items.squashfs.sha256 = 'XYZ';
    v.items['boot-kernel'].size = -1;
    delete v.items.manifest.path;
    const err = (() => {
      try {
        parseProducts(JSON.stringify(doc), 'http://u/p.json');
      } catch (e) {
        return e as MetadataError;
      }
    })();
    expect(err).toBeInstanceOf(MetadataError);
    expect(err!.message).toContain('http://u/p.json');
    expect(err!.message).toContain('["20250709"].items["squashfs"].sha256: expected 64 lowercase hex digits');
    expect(err!.message).toContain('items["boot-kernel"].size');
    expect(err!.message).toContain('items["manifest"].path');
  });

  it.each([
    ['not json', '{'],
    ['an array', '[]'],
    ['a wrong format', '{"format":"index:2.0","index":{}}'],
    ['an entry without a path', '{"format":"index:1.0","index":{"a":{"products":[]}}}'],
    ['products that are not a list', '{"format":"index:1.0","index":{"a":{"path":"p","products":"x"}}}'],
  ])('refuse an index that is %s', (_what, text) => {
    expect(() => parseIndex(text, 'u')).toThrow(MetadataError);
  });

  it.each([
    ['no products', '{"format":"products:1.0","content_id":"c"}'],
    ['no content id', '{"format":"products:1.0","products":{}}'],
    ['a version without items', '{"format":"products:1.0","content_id":"c","products":{"p":{"versions":{"v":{}}}}}'],
    ['a fractional size', '{"format":"products:1.0","content_id":"c","products":{"p":{"versions":{"v":{"items":{"i":{"path":"a","sha256":"' + 'a'.repeat(64) + '","size":1.5}}}}}}}'],
  ])('refuse a products file with %s', (_what, text) => {
    expect(() => parseProducts(text, 'u')).toThrow(MetadataError);
  });
});
