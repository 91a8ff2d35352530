import { UnsafePathError } from '../errors.js';

export const MAX_ITEM_PATH = 1024;

/**
 * Item and index-entry paths come from upstream metadata and become file
 * names in our tree: they must be relative, "/"-separated, and stay inside.
 * Refuses absolute paths, "." and ".." segments, empty segments, backslashes,
 * control characters and absurd lengths.
 */
export function isSafeItemPath(path: string): boolean {
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_ITEM_PATH) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(path)) return false;
  if (path.startsWith('/')) return false;
  return path.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

export function assertSafeItemPath(path: string, where: string): void {
  if (!isSafeItemPath(path)) throw new UnsafePathError(String(path), where);
}
