/** Path safety for every request path (HTTP and TFTP) and every upstream item path: pure, no I/O. */

export const MAX_PATH_LENGTH = 1024;
export const MAX_SEGMENT_LENGTH = 255;

/**
 * A request path as it came (percent-encoded when `decode`) → a clean relative
 * path of plain segments joined by "/", or undefined when it is not safe.
 *
 * Stricter than normalising: any ".." segment is refused even when it would
 * stay inside, so no spelling can climb out. "\" is a separator (UEFI and
 * Windows clients send it), empty and "." segments are dropped, control bytes
 * and NUL are refused, and a "%" left after the one decoding is refused so a
 * double-encoded ".." can never reach a later decoder.
 */
export function safeRelativePath(raw: string, options: { decode?: boolean } = {}): string | undefined {
  if (raw.length > MAX_PATH_LENGTH * 3) return undefined;
  let p = raw;
  if (options.decode) {
    try {
      p = decodeURIComponent(p);
    } catch {
      return undefined;
    }
  }
  if (p.length > MAX_PATH_LENGTH) return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f%]/.test(p)) return undefined;
  const out: string[] = [];
  for (const seg of p.split(/[/\\]/)) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..' || seg.length > MAX_SEGMENT_LENGTH) return undefined;
    out.push(seg);
  }
  return out.join('/');
}
