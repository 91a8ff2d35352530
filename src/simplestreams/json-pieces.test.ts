import { describe, expect, it } from 'vitest';
import { batched, jsonPieces, slices, utf8Pieces } from './json-pieces.js';

const doc = {
  content_id: 'com.example:v3:download',
  format: 'products:1.0',
  skippedFn: () => 1,
  skippedUndefined: undefined,
  when: new Date(0),
  products: {
    'p:1': { arch: 'amd64', empty: {}, none: [], list: [1, undefined, 'x\u2028y', { a: [] }], versions: { '20260101': { items: { k: { path: 'a/b', size: 3 } } } } },
    'p:2': Object.assign(Object.create(null) as object, { n: null, t: true }),
    'p:3': { toJSON: () => 'replaced' },
    'p:4': [[], {}, [[1]], { x: { y: { z: 'deep' } } }],
  },
  emptyTop: {},
  arr: [undefined, () => 2, Symbol('s'), 'ok'],
  last: 'é',
};

describe('jsonPieces', () => {
  for (const space of [0, 1, 2]) {
    for (const depth of [0, 1, 2, 3, 6]) {
      it(`joins to JSON.stringify's text (space ${space}, depth ${depth})`, () => {
        expect([...jsonPieces(doc, { space, depth })].join('')).toBe(JSON.stringify(doc, null, space));
      });
    }
  }

  it('opens the levels asked for, so no piece holds more than one product', () => {
    const products = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`p${i}`, { path: `x/${i}`.repeat(20) }]));
    const pieces = [...jsonPieces({ products }, { space: 1, depth: 2 })];
    expect(pieces.join('')).toBe(JSON.stringify({ products }, null, 1));
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThan(2 * JSON.stringify(products.p0, null, 1).length);
  });

  it('batches pieces into strings of at least the size asked, losing nothing', () => {
    const parts = ['ab', 'c', 'defg', 'h', 'ij'];
    const out = [...batched(parts, 3)];
    expect(out.join('')).toBe(parts.join(''));
    expect(out.slice(0, -1).every((s) => s.length >= 3)).toBe(true);
    expect([...batched([], 3)]).toEqual([]);
  });
});

describe('utf8Pieces', () => {
  it('encodes a surrogate pair split between pieces as the one character it is', () => {
    const text = 'a😀b€';
    const split = [text.slice(0, 2), text.slice(2, 3), '', text.slice(3)];
    expect(Buffer.concat([...utf8Pieces(split)]).toString('utf8')).toBe(text);
    expect(Buffer.concat([...utf8Pieces(['x\ud83d'])])).toEqual(Buffer.from('x\ud83d'));
  });
});

describe('slices', () => {
  it('cuts a string into slices of the size asked, never inside a surrogate pair', () => {
    const text = 'ab😀cd😀😀e';
    for (const size of [1, 2, 3, 4, 100]) {
      const out = [...slices(text, size)];
      expect(out.join('')).toBe(text);
      for (const s of out) expect(Buffer.from(s, 'utf8').toString('utf8')).toBe(s);
    }
    expect([...slices('', 4)]).toEqual([]);
  });
});
