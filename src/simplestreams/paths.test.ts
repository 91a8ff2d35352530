import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UnsafePathError } from '../errors.js';
import { assertSafeItemPath, isSafeItemPath, MAX_ITEM_PATH, unsafePathReason } from './paths.js';

const HOSTILE: [string, unknown, RegExp][] = [
  ['empty', '', /empty/],
  ['absolute', '/etc/passwd', /absolute/],
  ['double slash root', '//host/share', /absolute/],
  ['parent first', '../x', /"\.\." segment/],
  ['parent escaping', 'a/../../x', /"\.\." segment/],
  ['parent at the end', 'a/..', /"\.\." segment/],
  ['bare parent', '..', /"\.\." segment/],
  ['dot inside', 'a/./b', /"\." segment/],
  ['dot first', './a', /"\." segment/],
  ['bare dot', '.', /"\." segment/],
  ['empty segment', 'a//b', /empty segment/],
  ['trailing slash', 'a/', /empty segment/],
  ['backslash parent', 'a\\..\\..\\b', /backslash/],
  ['windows absolute', 'C:\\x', /backslash/],
  ['NUL', 'a\u0000b', /control/],
  ['newline', 'a\nb', /control/],
  ['escape sequence', 'a\u001b[2Jb', /control/],
  ['DEL', 'a\u007fb', /control/],
  ['C1 control', 'a\u0085b', /control/],
  ['lone surrogate', 'a/\ud800.tar', /surrogate/],
  ['too long', 'x'.repeat(MAX_ITEM_PATH + 1), /longer than 1024/],
  ['segment over NAME_MAX', `a/${'é'.repeat(128)}`, /255 bytes/],
  ['not a string', 42, /not a string/],
  ['null', null, /not a string/],
];

const FINE = [
  'noble/amd64/20250709/squashfs',
  'bootloaders/uefi/amd64/20230222.0/grub2-signed.tar.xz',
  'streams/v1/com.ubuntu.maas:stable:v3:download.sjson',
  'centos/centos70/amd64/20240622_01/root-tgz',
  'a..b/c...d/.hidden/..e/~',
  'x'.repeat(255),
  `${'a/'.repeat(511)}b`,
];

describe('item path safety', () => {
  it.each(HOSTILE)('refuses %s', (_what, p, reason) => {
    expect(isSafeItemPath(p)).toBe(false);
    expect(unsafePathReason(p)).toMatch(reason);
    expect(() => assertSafeItemPath(p, 'products x')).toThrow(UnsafePathError);
  });

  it('names the place and the reason in the error', () => {
    expect(() => assertSafeItemPath('../etc/passwd', 'streams/v1/x.json item squashfs')).toThrow(
      /"\.\.\/etc\/passwd" in streams\/v1\/x\.json item squashfs \(it has a "\.\." segment\)/,
    );
  });

  it.each(FINE)('accepts %j', (p) => {
    expect(unsafePathReason(p)).toBeUndefined();
    expect(() => assertSafeItemPath(p, 'test')).not.toThrow();
  });

  it('accepts only paths that stay inside the root, by path.posix and URL resolution as oracles', () => {
    const root = '/srv/tree';
    const alphabet = ['a', '.', '..', '/', '\\', 'b.c', '%2e', '~', '', ':', ' ', '\u0000', 'é'];
    let seed = 1;
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 30_000; i++) {
      let p = '';
      const n = 1 + (i % 8);
      for (let j = 0; j < n; j++) p += alphabet[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % alphabet.length];
      if (!isSafeItemPath(p)) {
        refused++;
        continue;
      }
      accepted++;
      const resolved = posix.resolve(root, p);
      expect(resolved.startsWith(`${root}/`), p).toBe(true);
      expect(posix.relative(root, resolved), p).toBe(p);
      expect(posix.normalize(p), p).toBe(p);
      // The same path as a URL below the mirror root, encoded per segment the way we fetch it.
      const url = new URL(p.split('/').map(encodeURIComponent).join('/'), 'http://mirror/root/');
      expect(url.pathname.startsWith('/root/'), p).toBe(true);
    }
    expect(accepted).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(1000);
  });
});
