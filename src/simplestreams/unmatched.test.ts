import { describe, expect, it } from 'vitest';
import { parseFilterGroups } from './filter.js';
import { editDistance, fieldCatalog, MAX_VALUES_PER_KEY, nearest, unmatchedFilters } from './unmatched.js';
import type { FlatItem } from './types.js';

const item = (fields: Record<string, string>, i = 0): FlatItem => ({
  contentId: 'c',
  productId: `p${i}`,
  versionName: 'v',
  itemName: 'i',
  path: `x/${i}`,
  sha256: String(i).padStart(64, '0'),
  size: 1,
  fields,
});
const ITEMS = [
  item({ os: 'ubuntu', release: 'noble', arch: 'amd64', subarch: 'ga-24.04' }, 1),
  item({ os: 'ubuntu', release: 'jammy', arch: 'arm64', subarch: 'ga-22.04' }, 2),
  item({ os: 'grub-efi-signed', arch: 'amd64', 'bootloader-type': 'uefi' }, 3),
];

describe('unmatchedFilters', () => {
  it('finds misspelt values, unknown keys and groups whose terms never meet; negations by what they name', () => {
    const groups = parseFilterGroups([['release=nobel', 'arc=amd64'], ['release~^(jammy|noble)$', 'arch=amd64'], ['release!=focal'], ['bootloader-type~.']]);
    expect(unmatchedFilters(groups, ITEMS)).toEqual([
      { kind: 'value', term: 'release=nobel', key: 'release', suggestions: ['noble'], offered: ['jammy', 'noble'] },
      { kind: 'key', term: 'arc=amd64', key: 'arc', suggestions: ['arch'], offered: ['arch', 'bootloader-type', 'os', 'release', 'subarch'] },
      { kind: 'value', term: 'release!=focal', key: 'release', suggestions: [], offered: ['jammy', 'noble'] },
    ]);
    expect(unmatchedFilters(parseFilterGroups([['release=jammy', 'arch=amd64']]), ITEMS)).toEqual([
      { kind: 'group', term: 'release=jammy & arch=amd64', key: '', suggestions: [], offered: [] },
    ]);
    expect(unmatchedFilters([], ITEMS)).toEqual([]);
  });

  it('keeps a bounded number of values per key', () => {
    const many = Array.from({ length: MAX_VALUES_PER_KEY + 10 }, (_, i) => item({ path: `p${i}` }, i));
    const c = fieldCatalog(many);
    expect(c.values.get('path')!.size).toBe(MAX_VALUES_PER_KEY);
    expect(c.overflow.has('path')).toBe(true);
  });
});

describe('nearest', () => {
  it('gives the closest candidates, else those containing the word', () => {
    expect(nearest('nobel', ['bionic', 'focal', 'jammy', 'noble'])).toEqual(['noble']);
    expect(nearest('arc', ['arch', 'subarch', 'subarches'])).toEqual(['arch']);
    expect(nearest('24.04', ['ga-22.04', 'ga-24.04', 'hwe-24.04'])).toEqual(['ga-24.04', 'hwe-24.04']);
    expect(nearest('zzzzzz', ['noble'])).toEqual([]);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });
});
