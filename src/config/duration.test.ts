import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000],
    ['6h', 21_600_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
    ['2d', 172_800_000],
    ['45', 45_000],
    [10, 10_000],
  ])('%s → %i ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'soon', '10x', '-5s', '5 s', 's', '1h junk'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
