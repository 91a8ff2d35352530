import { describe, expect, it } from 'vitest';
import { formatRfc2822, parseRfc2822, parseStrictRfc2822 } from './dates.js';

describe('formatRfc2822', () => {
  it('writes what simplestreams writes', () => {
    expect(formatRfc2822(new Date('2025-07-24T09:01:43Z'))).toBe('Thu, 24 Jul 2025 09:01:43 +0000');
    expect(formatRfc2822(new Date('2026-01-05T00:00:09.999Z'))).toBe('Mon, 05 Jan 2026 00:00:09 +0000');
  });

  it('refuses an invalid date instead of writing "NaN"', () => {
    expect(() => formatRfc2822(new Date('nope'))).toThrow(RangeError);
  });

  it('round-trips through both parsers over a spread of instants', () => {
    for (let t = Date.UTC(1999, 0, 1); t < Date.UTC(2031, 0, 1); t += 86_400_000 * 37 + 3_601_000) {
      const d = new Date(t);
      const s = formatRfc2822(d);
      expect(parseStrictRfc2822(s)?.getTime(), s).toBe(t);
      expect(parseRfc2822(s)?.getTime(), s).toBe(t);
    }
  });
});

describe('parseRfc2822', () => {
  it.each([
    ['Wed, 25 Jun 2025 11:01:49 +0000', '2025-06-25T11:01:49.000Z'],
    ['25 Jun 2025 13:01:49 +0200', '2025-06-25T11:01:49.000Z'],
    ['Wed, 25 Jun 2025 06:31:49 -0430', '2025-06-25T11:01:49.000Z'],
    ['Wed, 25 Jun 2025 11:01 GMT', '2025-06-25T11:01:00.000Z'],
    ['Sat, 1 Mar 2025 00:00:00 UT', '2025-03-01T00:00:00.000Z'],
  ])('reads %j', (s, iso) => expect(parseRfc2822(s)?.toISOString()).toBe(iso));

  it.each([
    '',
    '2025-06-25T11:01:49Z',
    'Fri, 31 Feb 2025 11:01:49 +0000',
    'Wed, 25 Jun 2025 24:00:00 +0000',
    'Wed, 25 Jun 2025 11:60:00 +0000',
    'Wed, 25 Jun 2025 11:01:49 +0060',
    'Mon, 25 Jun 2025 11:01:49 +0000',
    'Wed, 25 Juin 2025 11:01:49 +0000',
    'yesterday',
  ])('refuses %j', (s) => expect(parseRfc2822(s)).toBeUndefined());
});

describe('parseStrictRfc2822 (the form MAAS parses with strptime)', () => {
  it.each(['Thu, 24 Jul 2025 09:01:43 +0000', 'Fri, 4 Jul 2025 09:01:43 +0000', 'Thu, 24 Jul 2025 11:01:43 +0200'])(
    'accepts %j',
    (s) => expect(parseStrictRfc2822(s)).toBeInstanceOf(Date),
  );

  it.each([
    '24 Jul 2025 09:01:43 +0000',
    'Thu, 24 Jul 2025 09:01 +0000',
    'Thu, 24 Jul 2025 09:01:43 GMT',
    'Thu, 24 Jul 2025 09:01:43 +0000 ',
    'Thu,  24 Jul 2025 09:01:43 +0000',
    'Wed, 24 Jul 2025 09:01:43 +0000',
    '2025-07-24',
  ])('refuses %j, which the lenient parser may still read', (s) => expect(parseStrictRfc2822(s)).toBeUndefined());
});
