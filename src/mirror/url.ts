/**
 * Joins a mirror root and a relative path from the metadata. Not `new URL`:
 * a first segment with a colon ("com.ubuntu.maas:stable…") would read as a scheme.
 */
export function joinUrl(root: string, relPath: string): string {
  const base = root.endsWith('/') ? root : `${root}/`;
  return base + relPath.split('/').map((s) => encodeURIComponent(s).replace(/%3A/gi, ':')).join('/');
}
