import { describe, expect, it } from 'vitest';
import { acceptsGzip, evaluatePreconditions, tagListMatches } from './conditional.js';

const v = { etag: '"abc"', lastModified: new Date('2025-07-24T09:01:43.500Z') };
const lm = v.lastModified.toUTCString();
const earlier = new Date(v.lastModified.getTime() - 5000).toUTCString();

describe('evaluatePreconditions', () => {
  it.each([
    [{}, 'proceed'],
    [{ 'if-none-match': '"abc"' }, 'not-modified'],
    [{ 'if-none-match': 'W/"abc"' }, 'not-modified'],
    [{ 'if-none-match': '"x", "abc"' }, 'not-modified'],
    [{ 'if-none-match': '*' }, 'not-modified'],
    [{ 'if-none-match': '"x"' }, 'proceed'],
    [{ 'if-modified-since': lm }, 'not-modified'],
    [{ 'if-modified-since': earlier }, 'proceed'],
    [{ 'if-modified-since': 'not a date' }, 'proceed'],
    [{ 'if-none-match': '"x"', 'if-modified-since': lm }, 'proceed'],
    [{ 'if-match': '"abc"' }, 'proceed'],
    [{ 'if-match': 'W/"abc"' }, 'failed'],
    [{ 'if-match': '"x"' }, 'failed'],
    [{ 'if-unmodified-since': earlier }, 'failed'],
    [{ 'if-unmodified-since': lm }, 'proceed'],
  ])('%j → %s', (headers, want) => {
    expect(evaluatePreconditions(headers, v)).toBe(want);
  });

  it('compares weakly for If-None-Match and strongly for If-Match', () => {
    expect(tagListMatches('W/"abc"', '"abc"', false)).toBe(true);
    expect(tagListMatches('W/"abc"', '"abc"', true)).toBe(false);
  });
});

describe('acceptsGzip', () => {
  it.each([
    [undefined, false],
    ['', false],
    ['gzip', true],
    ['gzip, deflate, br', true],
    ['br;q=1.0, gzip;q=0.8', true],
    ['gzip;q=0', false],
    ['identity', false],
    ['*', true],
    ['*, gzip;q=0', false],
    ['*;q=0', false],
    ['x-gzip', true],
  ])('%s → %s', (header, want) => {
    expect(acceptsGzip(header)).toBe(want);
  });
});
