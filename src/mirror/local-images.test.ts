import { describe, expect, it } from 'vitest';
import { addImageVersion, clashingProducts, keepHeldLocal, localContent, nextVersionKey } from './local-images.js';
import type { PublishContent } from './next-tree.js';

const day = new Date('2026-12-03T10:00:00Z');
const sha = (c: string) => c.repeat(64);
const image = (root: string) => ({ os: 'rhel', release: '9', arch: 'amd64', subarch: 'generic', label: 'stable', root: { sha256: sha(root), size: 10 }, manifest: { sha256: sha('m'), size: 1 } });

describe('nextVersionKey', () => {
  it('dates keys like upstream CentOS and counts within a day', () => {
    expect(nextVersionKey([], day)).toBe('20261203_01');
    expect(nextVersionKey(['20261203_01', '20261201_04'], day)).toBe('20261203_02');
    expect(nextVersionKey(['20261130_07'], day)).toBe('20261203_01');
  });
  it('stays after every existing key when the clock went back, and gives up rather than sort wrong', () => {
    expect(nextVersionKey(['20270101_03'], day)).toBe('20270101_04');
    expect(nextVersionKey(['20261203_99'], day)).toBeUndefined();
    expect(nextVersionKey(['3000'], day)).toBeUndefined();
  });
});

describe('addImageVersion', () => {
  it('lays items out like upstream CentOS and keeps the newest maxVersions', () => {
    let products = addImageVersion('local:x', {}, image('a'), '20261203_01', 2);
    products = addImageVersion('local:x', products, image('b'), '20261203_02', 2);
    products = addImageVersion('local:x', products, image('c'), '20261203_03', 2);
    const p = products['local:x:rhel:9:amd64']!;
    expect(Object.keys(p.versions)).toEqual(['20261203_02', '20261203_03']);
    expect(p.versions['20261203_03']!.items).toEqual({
      manifest: { ftype: 'manifest', path: 'local/rhel/9/amd64/20261203_03/root-tgz.manifest', sha256: sha('m'), size: 1 },
      'root-tgz': { ftype: 'root-tgz', path: 'local/rhel/9/amd64/20261203_03/root-tgz', sha256: sha('c'), size: 10 },
    });
    expect(p).toMatchObject({ release_title: 'RHEL 9', subarches: 'generic', version: '9' });
  });
});

describe('keepHeldLocal and clashingProducts', () => {
  it('drops versions whose files are gone, and names mirrored products with the same os/release/arch', () => {
    const products = addImageVersion('local:x', addImageVersion('local:x', {}, image('a'), '20261203_01', 5), image('b'), '20261203_02', 5);
    const kept = keepHeldLocal(localContent('local:x', products), (s) => s !== sha('b'))!;
    expect(Object.keys(kept.doc.products['local:x:rhel:9:amd64']!.versions)).toEqual(['20261203_01']);
    expect(keepHeldLocal(localContent('local:x', products), () => false)).toBeUndefined();
    const upstream = { contentId: 'up', source: 'stable', basePath: 'streams/v1/up', entry: {}, doc: { format: 'products:1.0', content_id: 'up', os: 'rhel', products: { p: { release: '9', arch: 'amd64', versions: {} } } } } as unknown as PublishContent;
    expect(clashingProducts([upstream], { os: 'rhel', release: '9', arch: 'amd64' })).toEqual(['p (up)']);
    expect(clashingProducts([upstream], { os: 'rhel', release: '8', arch: 'amd64' })).toEqual([]);
  });
});
