/**
 * JSON.stringify's exact output, in pieces: the first `depth` levels of arrays and plain objects
 * are opened here and each value below them is stringified on its own. A products file of 10,000
 * products is 12 MB of text; produced this way it is never one string, so it can be written,
 * hashed and signed while only a product's worth of it exists at a time.
 */
export interface PiecesOptions {
  /** JSON.stringify's `space` as a count of spaces (0: compact). */
  readonly space: number;
  /** Levels opened here; values below are stringified whole. */
  readonly depth: number;
}

/** Concatenated, the pieces equal JSON.stringify(value, null, space) (value must not be undefined). */
export function* jsonPieces(value: unknown, opts: PiecesOptions): Generator<string> {
  yield* pieces(value, '', opts.depth, opts.space);
}

/**
 * The pieces joined into strings of at least `size` characters (the last may be shorter): a write
 * or a hash update per few KB of JSON costs more than the copying saves.
 */
export function* batched(source: Iterable<string>, size: number): Generator<string> {
  let parts: string[] = [];
  let length = 0;
  for (const p of source) {
    parts.push(p);
    length += p.length;
    if (length >= size) {
      yield parts.join('');
      parts = [];
      length = 0;
    }
  }
  if (length > 0) yield parts.join('');
}

/** What JSON.stringify leaves out of an object (and writes as null in an array). */
function skipped(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

/** Arrays and plain objects without toJSON: the values whose JSON this module may write itself. */
function openable(v: unknown): v is Record<string, unknown> | unknown[] {
  if (typeof v !== 'object' || v === null) return false;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
  if (Array.isArray(v)) return true;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** `value` stringified on its own, as it reads at this indent inside its parent. */
function whole(value: unknown, indent: string, space: number): string {
  const text = JSON.stringify(value, null, space);
  return space > 0 && indent !== '' ? text.replace(/\n/g, `\n${indent}`) : text;
}

function* pieces(value: unknown, indent: string, depth: number, space: number): Generator<string> {
  if (depth <= 0 || !openable(value)) {
    yield whole(value, indent, space);
    return;
  }
  const inner = indent + ' '.repeat(space);
  const nl = space > 0 ? '\n' : '';
  const colon = space > 0 ? ': ' : ':';
  if (Array.isArray(value)) {
    if (value.length === 0) {
      yield '[]';
      return;
    }
    yield `[${nl}`;
    for (let i = 0; i < value.length; i++) {
      yield inner;
      const v: unknown = value[i];
      if (skipped(v)) yield 'null';
      else yield* pieces(v, inner, depth - 1, space);
      yield i < value.length - 1 ? `,${nl}` : nl;
    }
    yield `${indent}]`;
    return;
  }
  const keys = Object.keys(value).filter((k) => !skipped(value[k]));
  if (keys.length === 0) {
    yield '{}';
    return;
  }
  yield `{${nl}`;
  for (const [i, k] of keys.entries()) {
    yield `${inner}${JSON.stringify(k)}${colon}`;
    yield* pieces(value[k], inner, depth - 1, space);
    yield i < keys.length - 1 ? `,${nl}` : nl;
  }
  yield `${indent}}`;
}

/**
 * A piece of text split before a trailing high surrogate. A piece may end inside a surrogate pair
 * (not ours: the pieces above end between JSON tokens); encoded alone, each half would become a
 * replacement character, so the high half waits for the next piece.
 */
export function splitTrailingSurrogate(s: string): [whole: string, carry: string] {
  const last = s.charCodeAt(s.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? [s.slice(0, -1), s.slice(-1)] : [s, ''];
}

/**
 * A long string in slices of about `size` characters, never between the halves of a surrogate pair:
 * hashed or written a slice at a time, a 12 MB text is not copied whole into UTF-8.
 */
export function* slices(text: string, size: number): Generator<string> {
  for (let at = 0; at < text.length; ) {
    let end = Math.min(text.length, at + Math.max(2, size));
    if (end < text.length) end -= splitTrailingSurrogate(text.slice(end - 1, end))[1].length;
    yield text.slice(at, end);
    at = end;
  }
}

/** The UTF-8 bytes of text given as pieces. */
export function* utf8Pieces(pieces: Iterable<string>): Generator<Uint8Array> {
  const encoder = new TextEncoder();
  let carry = '';
  for (const piece of pieces) {
    const [whole, next] = splitTrailingSurrogate(carry + piece);
    carry = next;
    if (whole !== '') yield encoder.encode(whole);
  }
  if (carry !== '') yield encoder.encode(carry);
}
