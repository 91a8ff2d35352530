import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { posix, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { publishSnapshot, sha256, snapshotId, switchCurrent, tempDataDir, type TempData } from '../../test/http/fixture.js';
import { AmbiguousHashError, NoSnapshotError, NotFoundError, NotHeldError, UnsafePathError } from '../errors.js';
import {
  bootloaderCandidates,
  classify,
  matchPrefix,
  MAX_PATH_LENGTH,
  Namespace,
  safeRelativePath,
} from './namespace.js';

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

describe('classify and the bootloader table', () => {
  it.each([
    ['MAAS/boot-resources/abcdef0/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel', { kind: 'hash', prefix: 'abcdef0', label: 'ubuntu/amd64/ga-24.04/noble/stable/boot-kernel' }],
    ['images/ABCDEF0123/x', { kind: 'hash', prefix: 'abcdef0123', label: 'x' }],
    ['images/abcdef0', { kind: 'hash', prefix: 'abcdef0', label: '' }],
    ['images/abcde/x', { kind: 'none' }],
    ['images/' + 'a'.repeat(65) + '/x', { kind: 'none' }],
  ])('%s', (path, want) => {
    expect(classify(path)).toEqual(want);
  });

  it('maps bare names through MAAS boot methods', () => {
    expect(bootloaderCandidates('bootx64.efi')).toEqual([{ bootloaderType: 'uefi', arch: 'amd64', file: 'bootx64.efi' }]);
    expect(bootloaderCandidates('grubaa64.efi')).toEqual([{ bootloaderType: 'uefi', arch: 'arm64', file: 'grubaa64.efi' }]);
    expect(bootloaderCandidates('bootppc64.bin').map((c) => c.arch)).toEqual(['ppc64el', 'ppc64']);
    expect(bootloaderCandidates('pxelinux.0')[0]).toEqual({ bootloaderType: 'pxe', arch: 'amd64', file: 'lpxelinux.0' });
    expect(bootloaderCandidates('menu.c32').map((c) => `${c.bootloaderType}/${c.arch}/${c.file}`)).toEqual(['pxe/amd64/menu.c32', 'pxe/i386/menu.c32']);
    expect(bootloaderCandidates('BOOTX64.EFI')[0]!.file).toBe('bootx64.efi');
    expect(bootloaderCandidates('vmlinuz')).toEqual([]);
    expect(classify('images/bootx64.efi')).toMatchObject({ kind: 'bootloader' });
    expect(classify('syslinux/ldlinux.c32')).toMatchObject({ kind: 'bootloader' });
    expect(classify('bootloaders/uefi/amd64/grub/grub.cfg')).toEqual({
      kind: 'bootloader',
      candidates: [{ bootloaderType: 'uefi', arch: 'amd64', file: 'grub/grub.cfg' }],
    });
    expect(classify('bootloaders/-x/amd64/a')).toEqual({ kind: 'none' });
  });

  it('matches prefixes by binary search', () => {
    const sorted = ['0a', 'abc1', 'abc2', 'abd', 'ff'];
    expect(matchPrefix(sorted, 'abc')).toEqual(['abc1', 'abc2']);
    expect(matchPrefix(sorted, 'abd')).toEqual(['abd']);
    expect(matchPrefix(sorted, 'b')).toEqual([]);
    expect(matchPrefix(sorted, 'ff0')).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// The resolver on a real tree.

let t: TempData;
beforeEach(async () => {
  t = await tempDataDir('mm-ns-');
});
afterEach(async () => {
  await t.cleanup();
});

describe('Namespace', () => {
  it('answers before any publish with NoSnapshotError', async () => {
    const ns = new Namespace({ layout: t.layout });
    const r = await ns.locateTree('streams/v1/index.json');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toBeInstanceOf(NoSnapshotError);
  });

  it('resolves tree paths, hash prefixes, not-held items and refuses escapes', async () => {
    const [a, b] = ['alpha', 'beta'];
    const id = snapshotId(1);
    await publishSnapshot(t.layout, {
      id,
      metadata: { 'streams/v1/index.json': '{}' },
      items: {
        'x/a': a,
        'x/b': b,
        'x/a-copy': a,
        'x/lazy': { content: 'LAZY', held: false },
      },
    });
    const ns = new Namespace({ layout: t.layout });
    const meta = await ns.resolve('streams/v1/index.json', { tree: true });
    expect(meta.target.kind).toBe('metadata');
    expect((await meta.handle.readFile()).toString()).toBe('{}');
    await meta.close();

    const item = await ns.resolve('/x//a', { tree: true });
    expect(item.target).toMatchObject({ kind: 'item', sha256: sha256(a), immutable: true });
    await item.close();

    const full = await ns.resolve(`images/${sha256(a)}/anything/at/all`);
    expect(full.target).toMatchObject({ path: 'x/a', immutable: true });
    await full.close();
    const short = await ns.resolve(`MAAS/boot-resources/${sha256(b).slice(0, 7)}/label`);
    expect(short.target).toMatchObject({ path: 'x/b', immutable: false });
    expect((await short.handle.readFile()).toString()).toBe(b);
    await short.close();

    await expect(ns.resolve('images/0000000/x')).rejects.toBeInstanceOf(NotFoundError);
    await expect(ns.resolve('x/lazy', { tree: true })).rejects.toBeInstanceOf(NotHeldError);
    await expect(ns.resolve(`images/${sha256('LAZY').slice(0, 10)}/x`)).rejects.toBeInstanceOf(NotHeldError);
    await expect(ns.resolve('../etc/passwd', { tree: true })).rejects.toBeInstanceOf(UnsafePathError);
    await expect(ns.resolve('streams', { tree: true })).rejects.toBeInstanceOf(NotFoundError);
    await expect(ns.resolve('nothing/here', { tree: true })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('reports an ambiguous prefix with every candidate', async () => {
    // Two manifests' worth of hashes sharing 7 hex digits cannot be brute-forced here,
    // so the manifest lists made-up hashes (not held) to exercise the index itself.
    const id = snapshotId(2);
    const h1 = 'abcdef0' + '1'.repeat(57);
    const h2 = 'abcdef0' + '2'.repeat(57);
    await publishSnapshot(t.layout, { id });
    const manifestPath = t.layout.manifest(id);
    const m = JSON.parse(await import('node:fs/promises').then((f) => f.readFile(manifestPath, 'utf8')));
    m.files = { 'p/1': { sha256: h1, size: 1, source: 's', held: true }, 'p/2': { sha256: h2, size: 1, source: 's', held: true } };
    await writeFile(manifestPath, JSON.stringify(m));
    const ns = new Namespace({ layout: t.layout });
    const r = await ns.locate('images/abcdef0/whatever');
    expect(r.ok).toBe(false);
    const err = !r.ok ? r.error : undefined;
    expect(err).toBeInstanceOf(AmbiguousHashError);
    expect((err as AmbiguousHashError).candidates).toEqual([h1, h2]);
    expect((await ns.locate('images/abcdef01/whatever')).ok).toBe(true);
  });

  it('follows `current` as it switches, and refuses symlinks out of the tree', async () => {
    await publishSnapshot(t.layout, { id: snapshotId(3), metadata: { 'streams/v1/index.json': 'one' } });
    const ns = new Namespace({ layout: t.layout, linkTtlMs: 0 });
    const f1 = await ns.resolve('streams/v1/index.json', { tree: true });
    await publishSnapshot(t.layout, { id: snapshotId(4), metadata: { 'streams/v1/index.json': 'two' } });
    const f2 = await ns.resolve('streams/v1/index.json', { tree: true });
    expect((await f1.handle.readFile()).toString()).toBe('one');
    expect((await f2.handle.readFile()).toString()).toBe('two');
    await f1.close();
    await f2.close();
    await switchCurrent(t.layout, snapshotId(3));
    expect(await ns.currentId()).toBe(snapshotId(3));

    await writeFile(join(t.dataDir, 'secret'), 'SECRET');
    await symlink(join(t.dataDir, 'secret'), join(t.layout.snapshot(snapshotId(3)), 'leak'));
    await expect(ns.resolve('leak', { tree: true })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('finds bootloaders by bare name, folder path and alias', async () => {
    const dir = join(t.layout.bootloadersStore, snapshotId(5));
    await mkdir(join(dir, 'uefi/amd64'), { recursive: true });
    await mkdir(join(dir, 'pxe/i386'), { recursive: true });
    await writeFile(join(dir, 'uefi/amd64/bootx64.efi'), 'SHIM');
    await writeFile(join(dir, 'pxe/i386/lpxelinux.0'), 'LPXE');
    await symlink('/etc/passwd', join(dir, 'pxe/i386/ldlinux.c32'));
    await symlink(join('bootloaders.d', snapshotId(5)), t.layout.bootloaders);
    const ns = new Namespace({ layout: t.layout });
    for (const name of ['bootx64.efi', '/images/bootx64.efi', '\\bootx64.efi', 'bootloaders/uefi/amd64/bootx64.efi']) {
      const f = await ns.resolve(name);
      expect((await f.handle.readFile()).toString(), name).toBe('SHIM');
      await f.close();
    }
    const p = await ns.resolve('pxelinux.0');
    expect(p.target.path).toBe('pxe/i386/lpxelinux.0');
    await p.close();
    await expect(ns.resolve('grubx64.efi')).rejects.toBeInstanceOf(NotFoundError);
    await expect(ns.resolve('ldlinux.c32')).rejects.toBeInstanceOf(NotFoundError);
    await expect(ns.resolve('bootloaders/uefi/amd64/../../../etc/passwd')).rejects.toBeInstanceOf(UnsafePathError);
  });
});
