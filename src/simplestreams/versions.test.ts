import { describe, expect, it } from 'vitest';
import { compareVersionKeys, newestVersions } from './versions.js';

const sorted = (keys: string[]) => [...keys].sort(compareVersionKeys);

describe('compareVersionKeys', () => {
  it('orders Ubuntu YYYYMMDD keys by date', () => {
    expect(sorted(['20250709', '20250618', '20241231', '20250101'])).toEqual(['20241231', '20250101', '20250618', '20250709']);
  });

  it('orders bootloader YYYYMMDD.N keys by bytes, so .9 is newer than .10', () => {
    expect(sorted(['20250101.10', '20250101.9', '20250101.0', '20231004.0'])).toEqual([
      '20231004.0',
      '20250101.0',
      '20250101.10',
      '20250101.9',
    ]);
    expect(compareVersionKeys('20250101.9', '20250101.10')).toBeGreaterThan(0);
  });

  it('orders CentOS YYYYMMDD_NN keys, and a bare date before its suffixed builds', () => {
    expect(sorted(['20240622_01', '20240604_01', '20240622_02', '20240622'])).toEqual([
      '20240604_01',
      '20240622',
      '20240622_01',
      '20240622_02',
    ]);
  });

  it('compares bytes: "." < "_" and uppercase before lowercase, no locale', () => {
    expect(compareVersionKeys('20250101.1', '20250101_1')).toBeLessThan(0);
    expect(compareVersionKeys('B', 'a')).toBeLessThan(0);
    expect(compareVersionKeys('9', '10')).toBeGreaterThan(0);
    expect(compareVersionKeys('x', 'x')).toBe(0);
    expect(compareVersionKeys('', 'a')).toBeLessThan(0);
  });

  it('agrees with Buffer.compare of the UTF-8 bytes, where the default sort does not', () => {
    // U+FF5E (3 UTF-8 bytes, one UTF-16 unit) vs U+1F600 (4 bytes, a surrogate pair)
    expect(compareVersionKeys('\uff5e', '\u{1f600}')).toBeLessThan(0);
    expect(['\u{1f600}', '\uff5e'].sort()).toEqual(['\u{1f600}', '\uff5e']);

    const alphabet = ['0', '9', '.', '_', '-', 'a', 'Z', 'é', '\uff5e', '\u{1f600}', '\u{10ffff}'];
    let seed = 7;
    const pick = () => alphabet[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % alphabet.length]!;
    const word = () => Array.from({ length: 1 + (seed % 4) }, pick).join('');
    for (let i = 0; i < 5000; i++) {
      const a = word();
      const b = word();
      expect(Math.sign(compareVersionKeys(a, b)), `${a} vs ${b}`).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
    }
  });
});

describe('newestVersions', () => {
  it('takes the n newest, newest first', () => {
    expect(newestVersions(['20210203.0', '20180807.0', '20210203.10'], 2)).toEqual(['20210203.10', '20210203.0']);
    expect(newestVersions(['20250101.10', '20250101.9'], 1)).toEqual(['20250101.9']);
    expect(newestVersions(['20240604_01', '20240622_01', '20211104_01'], 3)).toEqual(['20240622_01', '20240604_01', '20211104_01']);
  });

  it('copes with n beyond the list, zero, negative or fractional, and leaves the input alone', () => {
    const keys = ['20250618', '20250709'];
    expect(newestVersions(keys, 5)).toEqual(['20250709', '20250618']);
    expect(newestVersions(keys, 0)).toEqual([]);
    expect(newestVersions(keys, -1)).toEqual([]);
    expect(newestVersions(keys, 1.9)).toEqual(['20250709']);
    expect(keys).toEqual(['20250618', '20250709']);
  });
});
