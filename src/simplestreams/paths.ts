import { UnsafePathError } from '../errors.js';

/** Longest item or index-entry path we take, in characters. Real ones are under 100. */
export const MAX_ITEM_PATH = 1024;
/** NAME_MAX of every Linux file system we would write to, in bytes. */
const MAX_SEGMENT_BYTES = 255;

// C0 controls, DEL, C1 controls: never in a real path, and a newline or an
// escape sequence in a file name makes logs and shells lie.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// A lone surrogate has no UTF-8 form: Node writes U+FFFD instead, so two
// different metadata paths would land on the same file.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Why an item or index-entry path from upstream metadata is unsafe to use as
 * a file name under our tree, or undefined when it is fine. These paths are
 * attacker-controlled as far as we are concerned: a signed upstream can
 * still be wrong, and a mirror of a mirror may not be signed at all.
 */
export function unsafePathReason(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'it is not a string';
  if (path.length === 0) return 'it is empty';
  if (path.length > MAX_ITEM_PATH) return `it is longer than ${MAX_ITEM_PATH} characters`;
  if (CONTROL.test(path)) return 'it contains a control character';
  if (LONE_SURROGATE.test(path)) return 'it contains an unpaired UTF-16 surrogate';
  // Windows separators: harmless to path.posix, but not to whatever serves or copies the tree.
  if (path.includes('\\')) return 'it contains a backslash';
  if (path.startsWith('/')) return 'it is absolute';
  for (const seg of path.split('/')) {
    if (seg === '') return 'it has an empty segment';
    if (seg === '.' || seg === '..') return `it has a "${seg}" segment`;
    if (Buffer.byteLength(seg, 'utf8') > MAX_SEGMENT_BYTES) return `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

export function isSafeItemPath(path: unknown): path is string {
  return unsafePathReason(path) === undefined;
}

/** Throws UnsafePathError naming `where` and the reason; `where` says which metadata holds the path. */
export function assertSafeItemPath(path: unknown, where: string): asserts path is string {
  const reason = unsafePathReason(path);
  if (reason !== undefined) throw new UnsafePathError(String(path), `${where} (${reason})`);
}
