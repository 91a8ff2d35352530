import { bootloaderCandidates, type BootloaderCandidate } from './boot-methods.js';

/** What a safe relative path asks for outside the region tree: pure. */

const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const HASH_RE = /^(?:MAAS\/boot-resources|images)\/([0-9a-fA-F]{7,64})(?:\/(.*))?$/;
const BOOTLOADER_RE = /^bootloaders\/([^/]+)\/([^/]+)\/(.+)$/;
const BARE_RE = /^(?:images\/|syslinux\/)?([^/]+)$/;

export type Route =
  | { readonly kind: 'hash'; readonly prefix: string; readonly label: string }
  | { readonly kind: 'bootloader'; readonly candidates: readonly BootloaderCandidate[] }
  | { readonly kind: 'none' };

/** What a safe relative path (output of safeRelativePath) asks for, outside the region tree. */
export function classify(path: string): Route {
  const h = HASH_RE.exec(path);
  if (h) return { kind: 'hash', prefix: h[1]!.toLowerCase(), label: h[2] ?? '' };
  const b = BOOTLOADER_RE.exec(path);
  if (b) {
    if (!SEGMENT_RE.test(b[1]!) || !SEGMENT_RE.test(b[2]!)) return { kind: 'none' };
    return { kind: 'bootloader', candidates: [{ bootloaderType: b[1]!, arch: b[2]!, file: b[3]! }] };
  }
  const bare = BARE_RE.exec(path);
  if (bare) {
    const candidates = bootloaderCandidates(bare[1]!);
    if (candidates.length > 0) return { kind: 'bootloader', candidates };
  }
  return { kind: 'none' };
}
