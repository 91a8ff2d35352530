import { describe, expect, it } from 'vitest';
import { ifRangeAllows, parseRange } from './range.js';

describe('parseRange', () => {
  it.each([
    [undefined, 100, { kind: 'full' }],
    ['bytes=0-9', 100, { kind: 'partial', start: 0, end: 9 }],
    ['bytes=90-', 100, { kind: 'partial', start: 90, end: 99 }],
    ['bytes=-10', 100, { kind: 'partial', start: 90, end: 99 }],
    ['bytes=-500', 100, { kind: 'partial', start: 0, end: 99 }],
    ['bytes=10-1000', 100, { kind: 'partial', start: 10, end: 99 }],
    ['BYTES = 5-5', 100, { kind: 'partial', start: 5, end: 5 }],
    ['bytes=100-', 100, { kind: 'unsatisfiable' }],
    ['bytes=100-200', 100, { kind: 'unsatisfiable' }],
    ['bytes=-0', 100, { kind: 'unsatisfiable' }],
    ['bytes=0-0', 0, { kind: 'unsatisfiable' }],
    ['bytes=0-1,3-4', 100, { kind: 'full' }],
    ['bytes=0-1,200-300', 100, { kind: 'full' }],
    ['bytes=5-1', 100, { kind: 'full' }],
    ['bytes=a-b', 100, { kind: 'full' }],
    ['bytes=-', 100, { kind: 'full' }],
    ['bytes=', 100, { kind: 'full' }],
    ['lines=1-2', 100, { kind: 'full' }],
    ['bytes=9999999999999999-', 100, { kind: 'full' }],
  ])('%s of %i → %j', (header, size, want) => {
    expect(parseRange(header, size)).toEqual(want);
  });
});

describe('ifRangeAllows', () => {
  const lm = new Date('2025-07-24T09:01:43Z');
  it('matches a strong tag exactly and a date to the second', () => {
    expect(ifRangeAllows(undefined, '"a"', lm)).toBe(true);
    expect(ifRangeAllows('"a"', '"a"', lm)).toBe(true);
    expect(ifRangeAllows('"b"', '"a"', lm)).toBe(false);
    expect(ifRangeAllows('W/"a"', '"a"', lm)).toBe(false);
    expect(ifRangeAllows(lm.toUTCString(), '"a"', lm)).toBe(true);
    expect(ifRangeAllows(new Date(lm.getTime() - 1000).toUTCString(), '"a"', lm)).toBe(false);
    expect(ifRangeAllows('garbage', '"a"', lm)).toBe(false);
  });
});
