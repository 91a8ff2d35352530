/**
 * File names that FAT and exFAT media take. Those filesystems refuse control
 * characters and `"*:<>?\|`, drop trailing dots and spaces, and (FAT, in
 * Windows) reserve device names; upstream products paths hold ':'
 * ("streams/v1/com.ubuntu.maas:stable:v3:download.sjson"). The index names
 * the products files and each item names its path, so a tree can rename
 * them and stay valid for every simplestreams reader.
 */

// eslint-disable-next-line no-control-regex
const REFUSED = /[\u0000-\u001f\u007f"*:<>?\\|]/g;
const TRAILING = /[. ]+$/;
const RESERVED = /^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$/i;

export function fatSafeSegment(segment: string): string {
  let s = segment.replace(REFUSED, '_').replace(TRAILING, (m) => '_'.repeat(m.length));
  if (RESERVED.test(s)) s = `_${s}`;
  return s;
}

/** The path with every segment made FAT-safe ("/" stays the separator). */
export function fatSafePath(path: string): string {
  return path.split('/').map(fatSafeSegment).join('/');
}

/** Why a segment would be refused by FAT/exFAT, or undefined when it is fine. */
export function fatProblem(segment: string): string | undefined {
  return fatSafeSegment(segment) === segment ? undefined : `"${segment}" has a character FAT/exFAT refuse, a trailing dot or space, or a reserved name`;
}
