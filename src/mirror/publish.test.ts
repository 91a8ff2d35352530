import { describe, expect, it } from 'vitest';
import { lineSafeJson, lineSafeJsonPieces } from './publish.js';

describe('lineSafeJsonPieces', () => {
  it('is lineSafeJson in pieces, line-break escapes included, none holding more than a batch of products', () => {
    const products = Object.fromEntries(
      Array.from({ length: 3000 }, (_, i) => [`p:${i}`, { label: i % 7 === 0 ? 'a\u2028b\u0085c\u2029' : 'stable', versions: { '1': { items: { k: { path: `x/${i}`, size: i } } } } }]),
    );
    const doc = { content_id: 'c', format: 'products:1.0', products, updated: 'now' };
    const pieces = [...lineSafeJsonPieces(doc, 2)];
    expect(pieces.join('')).toBe(lineSafeJson(doc));
    expect(pieces.length).toBeGreaterThan(2);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThan(lineSafeJson(doc).length / 2);
  });
});
