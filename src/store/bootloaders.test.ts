import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readlink, readdir, realpath, symlink, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { Header } from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureLogger, publishSnapshot, snapshotId, tempDataDir, type TempData } from '../../test/http/fixture.js';
import { unpackBootloaders } from './bootloaders.js';
import { Resolver } from './resolver.js';
import { readManifest, type ManifestBootloader } from './manifest.js';

let t: TempData;
beforeEach(async () => {
  t = await tempDataDir('mm-boot-');
});
afterEach(async () => {
  await t.cleanup();
});

/** An archive made by the system tar, as upstream's are. */
async function systemTarXz(files: Record<string, string>, links: Record<string, string> = {}): Promise<Buffer> {
  const src = join(t.dataDir, 'src-' + Math.random().toString(36).slice(2));
  await mkdir(src, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(src, name, '..'), { recursive: true });
    await writeFile(join(src, name), content);
  }
  for (const [name, target] of Object.entries(links)) await symlink(target, join(src, name));
  const out = `${src}.tar.xz`;
  execFileSync('tar', ['-cJf', out, '-C', src, '.']);
  return readFile(out);
}

interface RawEntry {
  path: string;
  type: 'File' | 'SymbolicLink' | 'Link' | 'Directory' | 'CharacterDevice';
  body?: string;
  linkpath?: string;
}

/** A hand-made tar (headers written one by one, nothing sanitised), xz-compressed by the system xz. */
function craftedTarXz(entries: RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const h = new Header({
      path: e.path,
      type: e.type,
      linkpath: e.linkpath,
      size: e.type === 'File' ? body.length : 0,
      mode: e.type === 'Directory' ? 0o755 : 0o644,
      mtime: new Date('2025-01-01T00:00:00Z'),
      uid: 0,
      gid: 0,
    });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    blocks.push(block);
    if (e.type === 'File' && body.length > 0) {
      const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
      body.copy(padded);
      blocks.push(padded);
    }
  }
  blocks.push(Buffer.alloc(1024));
  return execFileSync('xz', ['-c'], { input: Buffer.concat(blocks) });
}

function bootloader(type: string, arch: string, items: Record<string, string>, version = '20250101.0'): ManifestBootloader {
  return { productId: `com.ubuntu.maas.stable:1:x:${type}:${arch}`, bootloaderType: type, arch, os: 'grub-efi-signed', version, items };
}

describe('unpackBootloaders', () => {
  it('unpacks the newest archives per type/arch, switches the symlink, and is idempotent', async () => {
    const shim = await systemTarXz({ 'bootx64.efi': 'SHIM' });
    const grub = await systemTarXz({ 'grubx64.efi': 'GRUB', 'grub/x86_64-efi/normal.mod': 'MOD' });
    const syslinux = await systemTarXz({ 'lpxelinux.0': 'LPXE', 'ldlinux.c32': 'LDLINUX', 'menu.c32': 'MENU' }, { 'pxelinux.0': 'lpxelinux.0' });
    const id = snapshotId(1);
    const manifest = await publishSnapshot(t.layout, {
      id,
      items: {
        'bootloaders/uefi/amd64/20250101.0/shim-signed.tar.xz': { content: shim, ftype: 'archive.tar.xz' },
        'bootloaders/uefi/amd64/20250101.0/grub2-signed.tar.xz': { content: grub, ftype: 'archive.tar.xz' },
        'bootloaders/pxe/amd64/20250101.0/syslinux.tar.xz': { content: syslinux, ftype: 'archive.tar.xz' },
      },
      bootloaders: [
        bootloader('uefi', 'amd64', {
          'shim-signed': 'bootloaders/uefi/amd64/20250101.0/shim-signed.tar.xz',
          'grub2-signed': 'bootloaders/uefi/amd64/20250101.0/grub2-signed.tar.xz',
        }),
        bootloader('pxe', 'amd64', { syslinux: 'bootloaders/pxe/amd64/20250101.0/syslinux.tar.xz' }),
      ],
    });
    const { logger } = captureLogger();
    const r = await unpackBootloaders(t.layout, manifest, logger);
    expect(r.reused).toBe(false);
    expect(r.refused).toEqual([]);
    expect(r.folders.map((f) => `${f.bootloaderType}/${f.arch}`)).toEqual(['uefi/amd64', 'pxe/amd64']);
    expect(await readlink(t.layout.bootloaders)).toBe(join('bootloaders.d', id));
    const b = t.layout.bootloaders;
    expect(await readFile(join(b, 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('SHIM');
    expect(await readFile(join(b, 'uefi/amd64/grubx64.efi'), 'utf8')).toBe('GRUB');
    expect(await readFile(join(b, 'uefi/amd64/grub/x86_64-efi/normal.mod'), 'utf8')).toBe('MOD');
    expect(await readFile(join(b, 'pxe/amd64/pxelinux.0'), 'utf8')).toBe('LPXE');
    expect((await lstat(join(b, 'pxe/amd64/pxelinux.0'))).isSymbolicLink()).toBe(true);

    const again = await unpackBootloaders(t.layout, manifest, logger);
    expect(again.reused).toBe(true);
    expect(await readFile(join(b, 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('SHIM');
    expect(await readdir(t.layout.bootloadersStore)).toEqual([id]);

    // The next publish switches to a new folder and drops the old one.
    const shim2 = await systemTarXz({ 'bootx64.efi': 'SHIM2' });
    const id2 = snapshotId(2);
    const m2 = await publishSnapshot(t.layout, {
      id: id2,
      items: { 'bootloaders/uefi/amd64/20250201.0/shim-signed.tar.xz': shim2 },
      bootloaders: [bootloader('uefi', 'amd64', { 'shim-signed': 'bootloaders/uefi/amd64/20250201.0/shim-signed.tar.xz' }, '20250201.0')],
    });
    const r2 = await unpackBootloaders(t.layout, m2, logger);
    expect(r2.removed).toEqual([]);
    expect(await readFile(join(b, 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('SHIM2');
    expect(existsSync(join(b, 'pxe'))).toBe(false);
    expect((await readdir(t.layout.bootloadersStore)).sort()).toEqual([id, id2]);
  });

  it('keeps the folder it switched away from for readers of the old link, and removes older ones', async () => {
    const { logger } = captureLogger();
    const publish = async (n: number, content: string) => {
      const item = `bootloaders/uefi/amd64/${n}/shim-signed.tar.xz`;
      const m = await publishSnapshot(t.layout, {
        id: snapshotId(n),
        items: { [item]: await systemTarXz({ 'bootx64.efi': content }) },
        bootloaders: [bootloader('uefi', 'amd64', { 'shim-signed': item }, `2025010${n}.0`)],
      });
      return unpackBootloaders(t.layout, m, logger);
    };
    await publish(1, 'ONE');
    // A daemon that read the link just before the switch keeps using it for linkTtlMs.
    const ns = new Resolver({ layout: t.layout, linkTtlMs: 60_000 });
    const before = await ns.resolve('bootx64.efi');
    expect((await before.handle.readFile()).toString()).toBe('ONE');
    await before.close();

    const r2 = await publish(2, 'TWO');
    expect(r2.removed).toEqual([]);
    expect((await readdir(t.layout.bootloadersStore)).sort()).toEqual([snapshotId(1), snapshotId(2)]);
    // Over HTTP and TFTP alike: the stale reader still gets a whole, valid file, not ENOENT (500) or 404.
    for (const name of ['bootx64.efi', 'bootloaders/uefi/amd64/bootx64.efi']) {
      const stale = await ns.resolve(name);
      expect(stale.target.rootId, name).toBe(snapshotId(1));
      expect((await stale.handle.readFile()).toString(), name).toBe('ONE');
      await stale.close();
    }
    const fresh = new Resolver({ layout: t.layout });
    const now = await fresh.resolve('bootx64.efi');
    expect((await now.handle.readFile()).toString()).toBe('TWO');
    await now.close();

    // Re-running on the folder already switched to removes nothing (the previous one may still be read).
    const again = await publish(2, 'TWO');
    expect(again).toMatchObject({ reused: true, removed: [] });
    expect((await readdir(t.layout.bootloadersStore)).sort()).toEqual([snapshotId(1), snapshotId(2)]);

    // The next switch keeps the folder it replaces and removes the older one, and any half-made one.
    await mkdir(join(t.layout.bootloadersStore, `.tmp-${snapshotId(9)}-1-abcdef`, 'uefi'), { recursive: true });
    const r3 = await publish(3, 'THREE');
    expect([...r3.removed].sort()).toEqual([`.tmp-${snapshotId(9)}-1-abcdef`, snapshotId(1)].sort());
    expect((await readdir(t.layout.bootloadersStore)).sort()).toEqual([snapshotId(2), snapshotId(3)]);
    expect(await readlink(t.layout.bootloaders)).toBe(join('bootloaders.d', snapshotId(3)));
    expect(await readFile(join(t.layout.bootloadersStore, snapshotId(2), 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('TWO');

    // A rollback switches back to an older folder; the one it replaces stays, the rest goes.
    const back = await unpackBootloaders(t.layout, await readManifest(t.layout, snapshotId(1)), logger);
    expect(back.reused).toBe(false);
    expect(back.removed).toEqual([snapshotId(2)]);
    expect((await readdir(t.layout.bootloadersStore)).sort()).toEqual([snapshotId(1), snapshotId(3)]);
    expect(await readFile(join(t.layout.bootloaders, 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('ONE');
  });

  it('refuses and logs hostile entries, unpacking the rest', async () => {
    const evil = craftedTarXz([
      { path: 'good.efi', type: 'File', body: 'GOOD' },
      { path: '/tmp/mm-abs-escape', type: 'File', body: 'ABS' },
      { path: '../../../escape-dotdot', type: 'File', body: 'DOTDOT' },
      { path: 'sub/../../escape-mid', type: 'File', body: 'MID' },
      { path: 'to-passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' },
      { path: 'to-up', type: 'SymbolicLink', linkpath: '../../../..' },
      { path: 'hard-out', type: 'Link', linkpath: '../../../../etc/hostname' },
      { path: 'hard-abs', type: 'Link', linkpath: '/etc/hostname' },
      { path: 'dev-null', type: 'CharacterDevice' },
      { path: 'ok-link2', type: 'SymbolicLink', linkpath: 'ok-link' },
      { path: 'ok-link', type: 'SymbolicLink', linkpath: 'good.efi' },
      { path: 'ok-hard', type: 'Link', linkpath: 'good.efi' },
      // Links through links: each target is inside its folder on paper, but the kernel follows a link before "..".
      { path: 'c', type: 'SymbolicLink', linkpath: '.' },
      { path: 'up', type: 'SymbolicLink', linkpath: 'c/..' },
      { path: 'up2', type: 'SymbolicLink', linkpath: 'up/..' },
      { path: 'up3', type: 'SymbolicLink', linkpath: 'up2/..' },
      { path: 'up4', type: 'SymbolicLink', linkpath: 'up3/..' },
      { path: 'passwd', type: 'SymbolicLink', linkpath: 'up4/etc/passwd' },
      { path: 'hard-via-link', type: 'Link', linkpath: 'up4/etc/hostname' },
      { path: 'c/via-link.efi', type: 'File', body: 'VIA' },
      // The same in an order a check made entry by entry cannot see (each link used comes later),
      // with links to a link that points outside: left to the walk of the unpacked folder.
      { path: 'leak2', type: 'SymbolicLink', linkpath: 'leak' },
      { path: 'leak', type: 'SymbolicLink', linkpath: 'rev-up' },
      { path: 'rev-up', type: 'SymbolicLink', linkpath: 'rev-c/..' },
      { path: 'rev-c', type: 'SymbolicLink', linkpath: '.' },
      // Fine: ".." that stays inside its folder.
      { path: 'sub/up-ok', type: 'SymbolicLink', linkpath: '../good.efi' },
    ]);
    // Made with GNU tar too: -P keeps the absolute name, --transform adds "..".
    const src = join(t.dataDir, 'gnu');
    await mkdir(src);
    await writeFile(join(src, 'fine.c32'), 'FINE');
    await writeFile(join(src, 'up.c32'), 'UP');
    const gnu = join(t.dataDir, 'gnu.tar.xz');
    execFileSync('tar', ['-cJf', gnu, '-P', '--transform', 's,.*/up\\.c32$,../../gnu-escape.c32,', join(src, 'up.c32'), '-C', src, 'fine.c32']);
    const gnuAbs = join(t.dataDir, 'gnu-abs.tar.xz');
    execFileSync('tar', ['-cJf', gnuAbs, '-P', join(src, 'fine.c32')]);

    const id = snapshotId(3);
    const manifest = await publishSnapshot(t.layout, {
      id,
      items: {
        'bootloaders/uefi/amd64/1/evil.tar.xz': evil,
        'bootloaders/pxe/amd64/1/gnu.tar.xz': await readFile(gnu),
        'bootloaders/pxe/amd64/1/gnu-abs.tar.xz': await readFile(gnuAbs),
      },
      bootloaders: [
        bootloader('uefi', 'amd64', { evil: 'bootloaders/uefi/amd64/1/evil.tar.xz' }),
        bootloader('pxe', 'amd64', { gnu: 'bootloaders/pxe/amd64/1/gnu.tar.xz', abs: 'bootloaders/pxe/amd64/1/gnu-abs.tar.xz' }),
      ],
    });
    const { logger, lines } = captureLogger();
    const r = await unpackBootloaders(t.layout, manifest, logger);
    const refused = r.refused.map((x) => x.entry).sort();
    expect(refused).toEqual(
      [
        '/tmp/mm-abs-escape',
        '../../../escape-dotdot',
        'sub/../../escape-mid',
        'to-passwd',
        'to-up',
        'hard-out',
        'hard-abs',
        'dev-null',
        'up',
        'up2',
        'up3',
        'up4',
        'passwd',
        'hard-via-link',
        'c/via-link.efi',
        'rev-up',
        'leak',
        'leak2',
        '../../gnu-escape.c32',
        join(src, 'fine.c32'),
      ].sort(),
    );
    const warnings = lines.filter((l) => l.level === 'warn' && l.msg === 'refused a bootloader archive entry');
    expect(warnings).toHaveLength(refused.length);
    expect(warnings.find((w) => w.entry === 'to-passwd')).toMatchObject({ archive: 'bootloaders/uefi/amd64/1/evil.tar.xz' });
    for (const entry of ['rev-up', 'leak', 'leak2']) {
      expect(warnings.find((w) => w.entry === entry), entry).toMatchObject({ archive: 'bootloaders/uefi/amd64/1/evil.tar.xz' });
      expect(r.refused.find((x) => x.entry === entry)?.reason, entry).toMatch(/outside its folder/);
    }

    const dir = join(t.layout.bootloaders, 'uefi/amd64');
    expect((await readdir(dir)).sort()).toEqual(['c', 'good.efi', 'ok-hard', 'ok-link', 'ok-link2', 'rev-c', 'sub']);
    expect(await readdir(join(dir, 'sub'))).toEqual(['up-ok']);
    expect(await readFile(join(dir, 'ok-link'), 'utf8')).toBe('GOOD');
    expect(await readFile(join(dir, 'ok-link2'), 'utf8')).toBe('GOOD');
    expect(await readFile(join(dir, 'sub/up-ok'), 'utf8')).toBe('GOOD');
    expect(await readFile(join(dir, 'ok-hard'), 'utf8')).toBe('GOOD');
    // What nginx or Apache would follow: every link left resolves inside its folder.
    const real = await realpath(dir);
    for (const name of ['c', 'rev-c', 'ok-link', 'ok-link2', 'sub/up-ok']) {
      const to = await realpath(join(dir, name));
      expect(to === real || to.startsWith(real + sep), `${name} → ${to}`).toBe(true);
    }
    expect((await readdir(join(t.layout.bootloaders, 'pxe/amd64'))).sort()).toEqual(['fine.c32']);
    for (const p of ['/tmp/mm-abs-escape', join(t.dataDir, 'escape-dotdot'), join(t.layout.bootloadersStore, 'escape-dotdot'), join(t.dataDir, 'gnu-escape.c32')]) {
      expect(existsSync(p), p).toBe(false);
    }
  });

  it('fails on a damaged archive and keeps the previous bootloaders', async () => {
    const good = await systemTarXz({ 'bootx64.efi': 'OLD' });
    const id = snapshotId(4);
    const m1 = await publishSnapshot(t.layout, {
      id,
      items: { 'bootloaders/uefi/amd64/1/shim.tar.xz': good },
      bootloaders: [bootloader('uefi', 'amd64', { shim: 'bootloaders/uefi/amd64/1/shim.tar.xz' })],
    });
    const { logger } = captureLogger();
    await unpackBootloaders(t.layout, m1, logger);
    const broken = Buffer.from(good);
    broken.fill(7, 40, 80);
    const m2 = await publishSnapshot(t.layout, {
      id: snapshotId(5),
      items: { 'bootloaders/uefi/amd64/2/shim.tar.xz': broken },
      bootloaders: [bootloader('uefi', 'amd64', { shim: 'bootloaders/uefi/amd64/2/shim.tar.xz' })],
    });
    await expect(unpackBootloaders(t.layout, m2, logger)).rejects.toMatchObject({ code: 'MM_METADATA_INVALID' });
    expect(await readFile(join(t.layout.bootloaders, 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('OLD');
    expect(await readdir(t.layout.bootloadersStore)).toEqual([id]);
  });

  it('unpacks folders side by side; one damaged archive among them fails the set once all have stopped, leaving nothing half-made', async () => {
    const { logger } = captureLogger();
    const good = await systemTarXz({ 'bootx64.efi': 'OLD' });
    const id = snapshotId(6);
    await unpackBootloaders(t.layout, await publishSnapshot(t.layout, {
      id,
      items: { 'bootloaders/uefi/amd64/1/shim.tar.xz': good },
      bootloaders: [bootloader('uefi', 'amd64', { shim: 'bootloaders/uefi/amd64/1/shim.tar.xz' })],
    }), logger);
    const broken = Buffer.from(await systemTarXz({ 'x.efi': 'X' }));
    broken.fill(7, 40, 80);
    const arches = ['amd64', 'arm64', 'ppc64el', 's390x', 'riscv64'];
    const items = Object.fromEntries(await Promise.all(arches.map(async (a) => [`bootloaders/uefi/${a}/2/shim.tar.xz`, a === 'ppc64el' ? broken : await systemTarXz({ [`${a}.efi`]: a.repeat(1000) })] as const)));
    const m2 = await publishSnapshot(t.layout, {
      id: snapshotId(7),
      items,
      bootloaders: arches.map((a) => bootloader('uefi', a, { shim: `bootloaders/uefi/${a}/2/shim.tar.xz` })),
    });
    await expect(unpackBootloaders(t.layout, m2, logger)).rejects.toMatchObject({ code: 'MM_METADATA_INVALID' });
    expect(await readFile(join(t.layout.bootloaders, 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('OLD');
    expect(await readdir(t.layout.bootloadersStore)).toEqual([id]);

    const m3 = await publishSnapshot(t.layout, {
      id: snapshotId(8),
      items: Object.fromEntries(await Promise.all(arches.map(async (a) => [`bootloaders/uefi/${a}/3/shim.tar.xz`, await systemTarXz({ [`${a}.efi`]: a })] as const))),
      bootloaders: arches.map((a) => bootloader('uefi', a, { shim: `bootloaders/uefi/${a}/3/shim.tar.xz` })),
    });
    const r = await unpackBootloaders(t.layout, m3, logger);
    expect(r.folders.map((f) => f.arch)).toEqual(arches);
    for (const a of arches) expect(await readFile(join(t.layout.bootloaders, `uefi/${a}/${a}.efi`), 'utf8')).toBe(a);
  });

  it('unpacks products that share a folder one after the other, as listed: the later one wins a name both carry', async () => {
    const { logger } = captureLogger();
    const first = await systemTarXz({ 'bootx64.efi': 'FIRST', 'only-first.efi': '1' });
    const second = await systemTarXz({ 'bootx64.efi': 'SECOND' });
    const m = await publishSnapshot(t.layout, {
      id: snapshotId(9),
      items: { 'bootloaders/uefi/amd64/a/shim.tar.xz': first, 'bootloaders/uefi/amd64/b/shim.tar.xz': second },
      bootloaders: [
        { ...bootloader('uefi', 'amd64', { shim: 'bootloaders/uefi/amd64/a/shim.tar.xz' }), productId: 'com.ubuntu.maas.stable:1:a:uefi:amd64' },
        bootloader('pxe', 'amd64', {}),
        { ...bootloader('uefi', 'amd64', { shim: 'bootloaders/uefi/amd64/b/shim.tar.xz' }), productId: 'com.ubuntu.maas.stable:1:b:uefi:amd64' },
      ],
    });
    const r = await unpackBootloaders(t.layout, m, logger);
    expect(r.folders.map((f) => f.productId)).toEqual(['com.ubuntu.maas.stable:1:a:uefi:amd64', 'com.ubuntu.maas.stable:1:b:uefi:amd64', 'com.ubuntu.maas.stable:1:x:pxe:amd64']);
    expect(await readFile(join(t.layout.bootloaders, 'uefi/amd64/bootx64.efi'), 'utf8')).toBe('SECOND');
    expect(await readFile(join(t.layout.bootloaders, 'uefi/amd64/only-first.efi'), 'utf8')).toBe('1');
  });
});
