import { describe, expect, it } from 'vitest';
import { formatRfc2822, parseRfc2822 } from './dates.js';

describe('RFC 2822 dates', () => {
  it('formats as upstream does', () => {
    expect(formatRfc2822(new Date('2025-07-24T09:01:43Z'))).toBe('Thu, 24 Jul 2025 09:01:43 +0000');
    expect(formatRfc2822(new Date('2026-01-05T00:00:09Z'))).toBe('Mon, 05 Jan 2026 00:00:09 +0000');
  });
  it('parses what it formats, and real samples', () => {
    const d = new Date('2025-06-25T11:01:49Z');
    expect(parseRfc2822(formatRfc2822(d))?.toISOString()).toBe(d.toISOString());
    expect(parseRfc2822('Wed, 25 Jun 2025 11:01:49 +0000')?.toISOString()).toBe('2025-06-25T11:01:49.000Z');
    expect(parseRfc2822('25 Jun 2025 13:01:49 +0200')?.toISOString()).toBe('2025-06-25T11:01:49.000Z');
    expect(parseRfc2822('Wed, 25 Jun 2025 11:01 GMT')?.toISOString()).toBe('2025-06-25T11:01:00.000Z');
  });
  it.each(['', '2025-06-25T11:01:49Z', 'Wed, 31 Feb 2025 11:01:49 +0000', 'Wed, 25 Jun 2025 25:01:49 +0000', 'yesterday', 'Wed, 25 Juin 2025 11:01:49 +0000'])(
    'refuses %j',
    (s) => expect(parseRfc2822(s)).toBeUndefined(),
  );
});
