/**
 * Budgets on a metadata document's shape, checked before anything walks it
 * (JSON.parse, JSON.stringify, structuredClone and our own code all recurse
 * or allocate per node). Real simplestreams documents nest about 8 deep and
 * list a few hundred products of a few versions each; these are far above.
 * The byte size of a document is capped while it downloads
 * (mirror/metadata.ts, MAX_METADATA_BYTES).
 */
export const METADATA_LIMITS = {
  /** Arrays and objects inside one another. */
  maxDepth: 32,
  /** Entries of an index. */
  maxIndexEntries: 10_000,
  /** Products of one products file. */
  maxProducts: 20_000,
  /** Versions of one product. */
  maxVersions: 2_000,
  /** Items of one version. */
  maxItemsPerVersion: 1_000,
  /** Items of one products file, all versions together. */
  maxItems: 200_000,
} as const;

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The offset in JSON text where nesting first goes deeper than max, or -1.
 * One pass, no recursion: safe on any text, valid JSON or not.
 */
export function jsonTooDeepAt(text: string, max: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return i;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return -1;
}

/** Whether an already parsed value nests deeper than max (walked with a stack, not recursion). */
export function valueTooDeep(value: unknown, max: number): boolean {
  const stack: { v: unknown; depth: number }[] = [{ v: value, depth: 0 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push({ v: child, depth: depth + 1 });
  }
  return false;
}
