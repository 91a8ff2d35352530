/**
 * Turns the file name of a request into a clean relative path, or a refusal.
 * Boot firmware is sloppy about names (PXE ROMs send "\\pxelinux.0", GRUB
 * sends "/grub/grub.cfg"), so separators are normalised; anything that could
 * climb out of the served tree is refused before any open callback sees it.
 */

export const MAX_NAME_BYTES = 512;

export type CleanName =
  | { readonly ok: true; readonly name: string }
  | { readonly ok: false; readonly refusal: 'not_found' | 'access_violation'; readonly reason: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function cleanName(raw: Buffer | string): CleanName {
  const length = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (length > MAX_NAME_BYTES) return refuse('not_found', `name longer than ${MAX_NAME_BYTES} bytes`);
  let text: string;
  if (typeof raw === 'string') {
    text = raw;
  } else {
    try {
      text = utf8.decode(raw);
    } catch {
      return refuse('not_found', 'name is not valid UTF-8');
    }
  }
  if (text.includes('\0')) return refuse('access_violation', 'NUL in name');
  // eslint-disable-next-line no-control-regex
  if (/[\x01-\x1f\x7f]/.test(text)) return refuse('not_found', 'control character in name');

  const segments: string[] = [];
  for (const segment of text.replaceAll('\\', '/').split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') return refuse('access_violation', '".." in name');
    segments.push(segment);
  }
  if (segments.length === 0) return refuse('not_found', 'empty name');
  return { ok: true, name: segments.join('/') };
}

function refuse(refusal: 'not_found' | 'access_violation', reason: string): CleanName {
  return { ok: false, refusal, reason };
}
