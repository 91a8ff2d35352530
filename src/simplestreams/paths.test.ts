import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UnsafePathError } from '../errors.js';
import { assertSafeItemPath, isSafeItemPath } from './paths.js';

const HOSTILE = [
  '',
  '/etc/passwd',
  '../x',
  'a/../../x',
  'a/./b',
  './a',
  'a//b',
  'a/',
  'a\\..\\b',
  '..',
  '.',
  'a/..',
  'a\u0000b',
  'a\nb',
  'x'.repeat(1025),
];
const FINE = [
  'noble/amd64/20250709/squashfs',
  'bootloaders/uefi/amd64/20230222.0/grub2-signed.tar.xz',
  'streams/v1/com.ubuntu.maas:stable:v3:download.sjson',
  'centos/centos70/amd64/20240622_01/root-tgz',
  'a..b/c...d',
];

describe('item path safety', () => {
  it.each(HOSTILE)('refuses %j', (p) => {
    expect(isSafeItemPath(p)).toBe(false);
    expect(() => assertSafeItemPath(p, 'test')).toThrow(UnsafePathError);
  });
  it.each(FINE)('accepts %j', (p) => expect(isSafeItemPath(p)).toBe(true));

  it('everything it accepts stays inside the root, by path.posix as the oracle', () => {
    const root = '/srv/tree';
    const alphabet = ['a', '.', '..', '/', '\\', 'b.c', '%2e', '~', ''];
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      let p = '';
      const n = 1 + (i % 7);
      for (let j = 0; j < n; j++) p += alphabet[(i * 31 + j * 17 + ((i >> j) & 7)) % alphabet.length];
      if (!isSafeItemPath(p)) continue;
      accepted++;
      const resolved = posix.resolve(root, p);
      expect(resolved.startsWith(`${root}/`), p).toBe(true);
      expect(posix.normalize(p), p).toBe(p);
    }
    expect(accepted).toBeGreaterThan(100);
  });
});
