import { describe, expect, it } from 'vitest';
import { compareVersionKeys, newestVersions } from './versions.js';

describe('version keys', () => {
  it('sort as byte strings, newest last', () => {
    const keys = ['20250709', '20250618', '20231004.0', '20250101.9', '20250101.10', '20240622_01', '20240604_01'];
    expect([...keys].sort(compareVersionKeys)).toEqual([
      '20231004.0',
      '20240604_01',
      '20240622_01',
      '20250101.10',
      '20250101.9',
      '20250618',
      '20250709',
    ]);
  });
  it('compare bytes, not locale or numbers', () => {
    expect(compareVersionKeys('B', 'a')).toBeLessThan(0);
    expect(compareVersionKeys('9', '10')).toBeGreaterThan(0);
    expect(compareVersionKeys('x', 'x')).toBe(0);
  });
  it('takes the n newest, newest first', () => {
    expect(newestVersions(['20210203.0', '20180807.0', '20210203.10'], 2)).toEqual(['20210203.10', '20210203.0']);
    expect(newestVersions(['a'], 5)).toEqual(['a']);
    expect(newestVersions(['a', 'b'], 0)).toEqual([]);
  });
});
