import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_PATH_LENGTH, safeRelativePath } from './safe-path.js';

// ---------------------------------------------------------------------------
// The pure path check, against path.posix as an oracle.

const TRAVERSALS = [
  '..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '..%2f', '..%2F', '..%5c', '..%5C', '%2e%2e%2f', '%2e%2e%5c',
  '..\\', '..%255c', '%252e%252e', '%25%32%65%25%32%65', '%c0%ae%c0%ae', '%c0%2e%c0%2e', '%e0%80%ae%e0%80%ae',
  '%uff0e%uff0e', '....', '.../...', '..;', '..%00', '%00..', '..%0a', '.%00.', '..%20', '%20..', '..%09',
];
const PREFIXES = ['', '/', '//', '\\', '\\\\', './', '/./', 'images/', 'maas/images/ephemeral-v3/stable/', 'bootloaders/uefi/amd64/', '%2f', '%5c'];
const TARGETS = ['etc/passwd', 'secret.txt', '', 'c:\\windows\\win.ini'];
const SEPARATORS = ['/', '\\', '%2f', '%5c', '%2F', '%5C', '//'];

function hostileTable(): string[] {
  const out = new Set<string>();
  for (const p of PREFIXES) {
    for (const t of TRAVERSALS) {
      for (const s of SEPARATORS) {
        for (const depth of [1, 2, 5]) {
          for (const target of TARGETS) out.add(p + `${t}${s}`.repeat(depth) + target);
        }
      }
    }
  }
  for (const extra of [
    '/%00', 'a%00b', 'a\u0000b', 'a\nb', 'a%0d%0ab', '%', '%zz', '%e0%a4%a', '%ff', 'a%2', '/' + 'a'.repeat(MAX_PATH_LENGTH + 1),
    'x/'.repeat(600), 'a'.repeat(256), '%2e%2e'.repeat(1000), '/..', '..', '.', '', '/', '//', '\\..\\..\\', 'a/../b',
    'a/./b', 'a//b', 'images/../../x', 'MAAS/boot-resources/abcdef0/../../../etc/passwd', '.hidden/x', 'a/.../b', '~/x',
    '%7e/x', 'foo%2fbar', 'foo%5cbar', 'streams/v1/index.json%00.png',
  ]) {
    out.add(extra);
  }
  return [...out];
}

/** What the path means to a POSIX filesystem, decoded once and with "\" as "/". */
function oracle(raw: string): string | undefined {
  let d: string;
  try {
    d = decodeURIComponent(raw);
  } catch {
    return undefined;
  }
  return d.replaceAll('\\', '/');
}

describe('safeRelativePath against path.posix', () => {
  const table = hostileTable();
  it(`has a big table (${table.length} paths)`, () => {
    expect(table.length).toBeGreaterThan(5000);
  });

  it('never yields a path that leaves the root, in any spelling', () => {
    const root = '/srv/tree';
    let accepted = 0;
    for (const raw of table) {
      const r = safeRelativePath(raw, { decode: true });
      const decoded = oracle(raw);
      if (decoded !== undefined) {
        const escapes = posix.normalize(`${decoded}`).split('/').includes('..');
        if (escapes) expect(r, raw).toBeUndefined();
      }
      if (r === undefined) continue;
      accepted++;
      // Already normal, relative, and inside root by posix's own reading.
      expect(posix.isAbsolute(r), raw).toBe(false);
      expect(r === '' || posix.normalize(r) === r, raw).toBe(true);
      const full = posix.resolve(root, r);
      expect(full === root || full.startsWith(`${root}/`), raw).toBe(true);
      expect(r.split('/')).not.toContain('..');
      // eslint-disable-next-line no-control-regex
      expect(/[\\%\u0000-\u001f]/.test(r), raw).toBe(false);
      expect(r.length).toBeLessThanOrEqual(MAX_PATH_LENGTH);
      // Where posix had nothing to refuse, both read the path the same way.
      expect(r, raw).toBe(posix.normalize(`/${decoded}`).slice(1).replace(/\/$/, ''));
      // Decoding is done once: running it again changes nothing.
      expect(safeRelativePath(r, { decode: true }), raw).toBe(r);
    }
    expect(accepted).toBeGreaterThan(0);
  });

  it.each([
    ['streams/v1/index.sjson', 'streams/v1/index.sjson'],
    ['/streams//v1/./index.sjson', 'streams/v1/index.sjson'],
    ['\\bootx64.efi', 'bootx64.efi'],
    ['grub\\grub.cfg', 'grub/grub.cfg'],
    ['com.ubuntu.maas%3Astable%3Av3%3Adownload.json', 'com.ubuntu.maas:stable:v3:download.json'],
    ['a/.../b', 'a/.../b'],
    ['/', ''],
    ['..', undefined],
    ['a/../b', undefined],
    ['%2e%2e/x', undefined],
    ['x/%2e%2e', undefined],
    ['..%2fetc', undefined],
    ['..%5cetc', undefined],
    ['%252e%252e/x', undefined],
    ['a%00b', undefined],
    ['%c0%ae%c0%ae/x', undefined],
    ['a'.repeat(300), undefined],
  ])('%s → %s', (raw, want) => {
    expect(safeRelativePath(raw, { decode: true })).toBe(want);
  });

  it('does not decode unless asked (TFTP names are literal)', () => {
    expect(safeRelativePath('%2e%2e/x')).toBeUndefined();
    expect(safeRelativePath('a:b')).toBe('a:b');
  });
});
