/**
 * Version keys sort as plain byte strings (C locale), as simplestreams and
 * MAAS sort them: "20250101.9" is newer than "20250101.10". Not numeric,
 * not natural: byte order is what every client does, so it is what we do.
 */
export function compareVersionKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The n newest keys, newest first. */
export function newestVersions(keys: readonly string[], n: number): string[] {
  return [...keys].sort(compareVersionKeys).reverse().slice(0, Math.max(0, n));
}
