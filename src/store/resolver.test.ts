import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { publishSnapshot, sha256, snapshotId, switchCurrent, tempDataDir, type TempData } from '../../test/http/fixture.js';
import { AmbiguousHashError, NoSnapshotError, NotFoundError, NotHeldError, UnsafePathError } from '../errors.js';
import { Resolver } from './resolver.js';



// ---------------------------------------------------------------------------
// The resolver on a real tree.

let t: TempData;
beforeEach(async () => {
  t = await tempDataDir('mm-ns-');
});
afterEach(async () => {
  await t.cleanup();
});

describe('Resolver', () => {
  it('answers before any publish with NoSnapshotError', async () => {
    const ns = new Resolver({ layout: t.layout });
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
    const ns = new Resolver({ layout: t.layout });
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
    const ns = new Resolver({ layout: t.layout });
    const r = await ns.locate('images/abcdef0/whatever');
    expect(r.ok).toBe(false);
    const err = !r.ok ? r.error : undefined;
    expect(err).toBeInstanceOf(AmbiguousHashError);
    expect((err as AmbiguousHashError).candidates).toEqual([h1, h2]);
    expect((await ns.locate('images/abcdef01/whatever')).ok).toBe(true);
  });

  it('follows `current` as it switches, and refuses symlinks out of the tree', async () => {
    await publishSnapshot(t.layout, { id: snapshotId(3), metadata: { 'streams/v1/index.json': 'one' } });
    const ns = new Resolver({ layout: t.layout, linkTtlMs: 0 });
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
    const ns = new Resolver({ layout: t.layout });
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
