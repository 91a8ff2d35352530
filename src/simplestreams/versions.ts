/**
 * Version keys sort as plain byte strings (C locale), the order python's
 * sorted() gives sstream-mirror and MAAS (`get_latest_version`):
 * "20250101.9" is newer than "20250101.10". Not numeric, not natural.
 *
 * Code point order is UTF-8 byte order for every well-formed string, and it
 * also keeps lone surrogates apart the way python does, where Buffer.from
 * would fold them all into U+FFFD. UTF-16 code unit order (the default
 * Array.prototype.sort) is not the same: it puts U+10000.. before U+E000...
 */
export function compareVersionKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    // Equal pairs step on to their equal low halves; the first difference decides.
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** The n newest keys, newest first. */
export function newestVersions(keys: readonly string[], n: number): string[] {
  const count = Math.max(0, Math.floor(n));
  return [...keys].sort((a, b) => compareVersionKeys(b, a)).slice(0, count);
}
