import { randomBytes } from 'node:crypto';
import { appendFile, chmod, chown, mkdir, readFile, readdir, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { validateForMaas } from '../../src/simplestreams/maas-rules.js';
import type { IndexDocument, ProductsDocument } from '../../src/simplestreams/types.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { blobNames, checkCurrent, cli, Gpgv, run, sha256Of, writeJsonConfig } from '../faults/helpers.js';

const KiB = 1024;
const LOCAL = 'local:custom-images';

let env: Env;
let gpgv: Gpgv;
let configFile: string;
let n = 0;

beforeAll(async () => {
  env = await makeEnv({ sizeOf: () => 8 * KiB });
  configFile = await writeJsonConfig(join(env.dir, 'images.yaml'), {
    dataDir: env.dataDir,
    sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }],
    publish: { keepSnapshots: 10 },
    images: { maxVersions: 2 },
    download: { concurrency: 2, retries: 2, connectTimeout: '2s', idleTimeout: '5s' },
    tftp: { enabled: false },
  });
  const synced = await mm(['sync', '--quiet']);
  expect(synced.code, synced.stderr).toBe(0);
  const keyring = join(env.dir, 'mirror.gpg');
  expect((await mm(['keys', 'export', '-o', keyring])).code).toBe(0);
  gpgv = await Gpgv.create(keyring);
});

afterAll(async () => {
  await gpgv?.close();
  await env?.close();
});

const mm = (args: string[]) => cli([...args, '--config', configFile]);

/** A real root tarball made by tar(1): a few files with random content. */
async function rootTarball(name: string, bytes = 64 * KiB): Promise<string> {
  const dir = join(env.dir, `root-${name}-${n++}`);
  await mkdir(join(dir, 'etc'), { recursive: true });
  await writeFile(join(dir, 'etc', 'os-release'), `NAME="${name}"\n`);
  await writeFile(join(dir, 'blob'), randomBytes(bytes));
  const out = join(env.dir, `${name}-${n++}.tar.gz`);
  const r = await run('tar', ['-czf', out, '-C', dir, '.']);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

interface Published {
  id: string;
  products: Map<string, ProductsDocument>;
  root: string;
}

/** gpgv on every document and every listed item's bytes (checkCurrent), plus the project's MAAS rules. */
async function published(): Promise<Published> {
  const tree = (await checkCurrent(env.dataDir, gpgv))!;
  const index = JSON.parse(await readFile(join(tree.root, 'streams/v1/index.json'), 'utf8')) as IndexDocument;
  const docs = new Map([...tree.products.values()].map((d) => [index.index[d.content_id]!.path, d]));
  expect(validateForMaas(index, docs)).toEqual([]);
  return { id: tree.id, products: tree.products, root: tree.root };
}

const localVersions = (p: Published) =>
  Object.fromEntries(Object.entries(p.products.get(LOCAL)?.products ?? {}).map(([id, prod]) => [id, Object.keys(prod.versions).sort()]));

async function listed(): Promise<{ os: string; release: string; arch: string; version: string; sha256: string }[]> {
  const r = await mm(['images', 'list', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

async function state(): Promise<{ current: string; snapshots: string[]; blobs: string[] }> {
  return {
    current: await readlink(join(env.dataDir, 'current')),
    snapshots: (await readdir(join(env.dataDir, 'snapshots'))).sort(),
    blobs: [...(await blobNames(env.dataDir)).keys()].sort(),
  };
}

describe('maas-mirror images', () => {
  let rhel: string;
  let rhelSha: string;

  it('add stores the tarball (hard link on the same filesystem) and publishes a signed tree MAAS accepts', async () => {
    rhel = await rootTarball('rhel');
    rhelSha = await sha256Of(rhel);
    const before = await published();
    const r = await mm(['images', 'add', rhel, '--os', 'rhel', '--release', '9', '--arch', 'amd64', '--title', 'RHEL 9 (site)', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ linked: true, manifestGenerated: true, trimmed: [], image: { os: 'rhel', release: '9', arch: 'amd64', sha256: rhelSha, title: 'RHEL 9 (site)' } });
    expect(out.image.version).toMatch(/^\d{8}_01$/);

    const after = await published();
    expect(after.id).toBe(out.snapshot);
    expect(after.id).not.toBe(before.id);
    // Upstream's products files are the same as before, only re-signed.
    for (const [cid, doc] of before.products) expect({ ...after.products.get(cid), updated: 0 }).toEqual({ ...doc, updated: 0 });
    const product = after.products.get(LOCAL)!.products[`${LOCAL}:rhel:9:amd64`]!;
    expect(product).toMatchObject({ os: 'rhel', release: '9', arch: 'amd64', subarch: 'generic', subarches: 'generic', label: 'stable', release_title: 'RHEL 9 (site)', version: '9' });
    const items = product.versions[out.image.version]!.items;
    expect(Object.keys(items).sort()).toEqual(['manifest', 'root-tgz']);
    expect(items['root-tgz']).toMatchObject({ ftype: 'root-tgz', sha256: rhelSha, path: `local/rhel/9/amd64/${out.image.version}/root-tgz` });
    expect(items.manifest!.ftype).toBe('manifest');
    // The store took the file's own inode.
    const [a, b] = await Promise.all([stat(rhel), stat(join(env.dataDir, 'blobs/sha256', rhelSha.slice(0, 2), rhelSha))]);
    expect(b.ino).toBe(a.ino);
    expect(await listed()).toEqual([expect.objectContaining({ os: 'rhel', release: '9', arch: 'amd64', version: out.image.version, sha256: rhelSha })]);
  });

  it('adds a new version each time and trims to images.maxVersions', async () => {
    const v = [];
    for (let i = 0; i < 2; i++) {
      const r = await mm(['images', 'add', await rootTarball('rhel'), '--os', 'rhel', '--release', '9', '--arch', 'amd64', '--json']);
      expect(r.code, r.stderr).toBe(0);
      v.push(JSON.parse(r.stdout));
    }
    expect(v[0].image.version < v[1].image.version).toBe(true);
    expect(v[1].trimmed).toHaveLength(1);
    const p = await published();
    expect(localVersions(p)[`${LOCAL}:rhel:9:amd64`]).toEqual([v[0].image.version, v[1].image.version]);
  });

  it('a sync keeps the images, gc keeps their blobs, verify re-hashes them', async () => {
    const before = localVersions(await published());
    const synced = await mm(['sync', '--json']);
    expect(synced.code, synced.stderr).toBe(0);
    expect(localVersions(await published())).toEqual(before);
    const gc = await mm(['gc', '--json']);
    expect(gc.code, gc.stderr).toBe(0);
    const p = await published(); // every listed item still there, byte for byte
    expect(localVersions(p)).toEqual(before);
    const verify = await mm(['verify', '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout).checked).toBe((await blobNames(env.dataDir)).size);
    // A local blob damaged on disk is found by verify.
    const item = Object.values(p.products.get(LOCAL)!.products)[0]!;
    const newest = Object.values(item.versions).at(-1)!.items['root-tgz']!;
    const blob = join(env.dataDir, 'blobs/sha256', newest.sha256.slice(0, 2), newest.sha256);
    const { chmod } = await import('node:fs/promises');
    await chmod(blob, 0o644);
    const bytes = await readFile(blob);
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(blob, bytes);
    const bad = await mm(['verify', '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).corrupt.map((c: { sha256: string }) => c.sha256)).toEqual([newest.sha256]);
    // The next sync publishes the image without the lost version, not a tree listing a missing file.
    const resync = await mm(['sync', '--json']);
    expect(resync.code, resync.stderr).toBe(0);
    const after = localVersions(await published());
    expect(after[`${LOCAL}:rhel:9:amd64`]).toEqual(before[`${LOCAL}:rhel:9:amd64`]!.slice(0, 1));
  });

  it('rollback restores the image set of the snapshot rolled back to; a sync keeps it', async () => {
    const before = await published();
    const r = await mm(['images', 'add', await rootTarball('ol'), '--os', 'ol', '--release', '9', '--arch', 'amd64']);
    expect(r.code, r.stderr).toBe(0);
    expect(Object.keys(localVersions(await published()))).toContain(`${LOCAL}:ol:9:amd64`);
    const back = await mm(['rollback']);
    expect(back.code, back.stderr).toBe(0);
    const p = await published();
    expect(p.id).toBe(before.id);
    expect(localVersions(p)).toEqual(localVersions(before));
    expect((await listed()).map((i) => i.os)).not.toContain('ol');
    const synced = await mm(['sync', '--json']);
    expect(synced.code, synced.stderr).toBe(0);
    expect(localVersions(await published())).toEqual(localVersions(before));
  });

  it('remove takes one version, then the image', async () => {
    const add = await mm(['images', 'add', await rootTarball('suse'), '--os', 'suse', '--release', '15.6', '--arch', 'arm64', '--json']);
    expect(add.code, add.stderr).toBe(0);
    const version = JSON.parse(add.stdout).image.version as string;
    const missing = await mm(['images', 'remove', 'suse/15.6/arm64', '--version', '19990101_01']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no local image suse\/15.6\/arm64 version 19990101_01/);
    const one = await mm(['images', 'remove', 'suse/15.6/arm64', '--version', version, '--json']);
    expect(one.code, one.stderr).toBe(0);
    expect(Object.keys(localVersions(await published()))).not.toContain(`${LOCAL}:suse:15.6:arm64`);
    const all = await mm(['images', 'remove', 'rhel/9/amd64']);
    expect(all.code, all.stderr).toBe(0);
    const p = await published();
    expect(p.products.has(LOCAL)).toBe(false);
    expect(await listed()).toEqual([]);
  });
});

describe('maas-mirror images add refuses, with exit 2 and nothing changed', () => {
  const bad: [string, () => Promise<{ file: string; args?: string[] }>, RegExp][] = [
    ['an os MAAS cannot deploy from a tarball', async () => ({ file: await rootTarball('x'), args: ['--os', 'debian'] }), /not one MAAS deploys from a root tarball/],
    ['a Windows image (root-dd)', async () => ({ file: await rootTarball('x'), args: ['--os', 'windows'] }), /root-dd.*MAAS 3.8's simplestreams model/],
    ['a .dd.gz file', async () => {
      const file = join(env.dir, 'esxi.dd.gz');
      await writeFile(file, gzipSync(randomBytes(4096)));
      return { file };
    }, /disk image \(root-dd\)/],
    ['a gzip\'d disk image', async () => {
      const mbr = Buffer.alloc(4096);
      mbr[510] = 0x55;
      mbr[511] = 0xaa;
      const file = join(env.dir, `disk-${n++}.img.gz`);
      await writeFile(file, gzipSync(mbr));
      return { file };
    }, /gzip'd disk image \(root-dd\)/],
    ['an empty file', async () => {
      const file = join(env.dir, `empty-${n++}.tar.gz`);
      await writeFile(file, '');
      return { file };
    }, /is empty/],
    ['a file that is not gzip', async () => {
      const file = join(env.dir, `plain-${n++}.tar.gz`);
      await writeFile(file, 'just text\n'.repeat(100));
      return { file };
    }, /not gzip-compressed/],
    ['an xz tarball', async () => {
      const file = join(env.dir, `x-${n++}.tar.xz`);
      const r = await run('sh', ['-c', `tar -cJf ${file} -C ${env.dir} images.yaml`]);
      expect(r.code).toBe(0);
      return { file };
    }, /xz-compressed/],
    ['gzip that is not a tar', async () => {
      const file = join(env.dir, `gz-${n++}.tar.gz`);
      await writeFile(file, gzipSync(Buffer.from('not a tar archive\n'.repeat(100))));
      return { file };
    }, /not a tar archive/],
    ['an os/release/arch a mirrored product has', async () => ({ file: await rootTarball('x'), args: ['--os', 'centos', '--release', '8'] }), /already a mirrored product.*centos-bases:8:amd64/],
    ['a release with a slash', async () => ({ file: await rootTarball('x'), args: ['--release', '9/../x'] }), /--release/],
  ];

  it.each(bad)('refuses %s', async (_what, make, message) => {
    const { file, args = [] } = await make();
    const before = await state();
    const base = { '--os': 'rhel', '--release': '8', '--arch': 'amd64' };
    const given = new Map(Object.entries(base));
    for (let i = 0; i < args.length; i += 2) given.set(args[i]!, args[i + 1]!);
    const r = await mm(['images', 'add', file, ...[...given].flat()]);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(await state()).toEqual(before);
  });

  it('refuses add without --os, --release and --arch', async () => {
    const r = await mm(['images', 'add', await rootTarball('x'), '--os', 'rhel']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/needs --os, --release and --arch/);
  });
});

describe('maas-mirror images before any sync', () => {
  it('publishes a tree of the local image alone, which the first sync then completes', async () => {
    const fresh = await makeEnv({ sizeOf: () => 4 * KiB });
    onTestFinished(() => fresh.close());
    const cfg = await writeJsonConfig(join(fresh.dir, 'fresh.yaml'), {
      dataDir: fresh.dataDir,
      sources: [{ name: 'stable', url: fresh.server.url, keyring: fresh.key.keyring }],
    });
    const tgz = join(fresh.dir, 'root.tar.gz');
    expect((await run('tar', ['-czf', tgz, '-C', fresh.dir, 'fresh.yaml'])).code).toBe(0);
    const added = await cli(['images', 'add', tgz, '--os', 'custom', '--release', 'kiosk', '--arch', 'amd64', '--config', cfg]);
    expect(added.code, added.stderr).toBe(0);
    const keyring = join(fresh.dir, 'mirror.gpg');
    expect((await cli(['keys', 'export', '-o', keyring, '--config', cfg])).code).toBe(0);
    const check = await Gpgv.create(keyring);
    onTestFinished(() => check.close());
    const alone = (await checkCurrent(fresh.dataDir, check))!;
    expect([...alone.products.keys()]).toEqual([LOCAL]);
    const synced = await cli(['sync', '--quiet', '--config', cfg]);
    expect(synced.code, synced.stderr).toBe(0);
    const full = (await checkCurrent(fresh.dataDir, check))!;
    expect(full.products.size).toBeGreaterThan(1);
    expect(Object.keys(full.products.get(LOCAL)!.products)).toEqual([`${LOCAL}:custom:kiosk:amd64`]);
  });
});

describe('maas-mirror images while rolled back', () => {
  it('images add keeps the rollback hold: the next sync does not bring back the upstream versions rolled away from', async () => {
    const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
    const e = await makeEnv({ sizeOf: () => 4 * KiB });
    onTestFinished(() => e.close());
    const cfg = await writeJsonConfig(join(e.dir, 'held.yaml'), {
      dataDir: e.dataDir,
      sources: [{ name: 'stable', url: e.server.url, keyring: e.key.keyring }],
      publish: { keepSnapshots: 10 },
    });
    const mmHeld = (args: string[]) => cli([...args, '--config', cfg]);
    expect((await mmHeld(['sync', '--quiet'])).code).toBe(0);
    e.upstream.addVersion(NOBLE, '20250801');
    await e.upstream.write(new Date(Date.now() + 60_000));
    expect((await mmHeld(['sync', '--quiet'])).code).toBe(0);
    const back = await mmHeld(['rollback']);
    expect(back.code, back.stderr).toBe(0);

    const tgz = join(e.dir, 'root.tar.gz');
    expect((await run('tar', ['-czf', tgz, '-C', e.dir, 'held.yaml'])).code).toBe(0);
    const added = await mmHeld(['images', 'add', tgz, '--os', 'ubuntu', '--release', 'kiosk', '--arch', 'amd64', '--json']);
    expect(added.code, added.stderr).toBe(0);
    const synced = await mmHeld(['sync', '--json']);
    expect(synced.code, synced.stderr).toBe(0);
    expect(JSON.parse(synced.stdout).published).toBe(false);
    const current = await readlink(join(e.dataDir, 'current'));
    expect(current).toBe(join('snapshots', JSON.parse(added.stdout).snapshot));
    const doc = JSON.parse(await readFile(join(e.dataDir, current, 'streams/v1/com.ubuntu.maas:stable:v3:download.json'), 'utf8')) as ProductsDocument;
    expect(Object.keys(doc.products[NOBLE]!.versions)).not.toContain('20250801');
  });
});

describe('maas-mirror images add leaves a file it may not take as it was', () => {
  it('copies (does not link) a group-writable or another user\'s file, and leaves its mode alone', async () => {
    const blobOf = (sha: string) => join(env.dataDir, 'blobs/sha256', sha.slice(0, 2), sha);
    // Group-writable: someone else could write into it after the store verified it.
    const shared = await rootTarball('ol');
    await chmod(shared, 0o664);
    const a = await mm(['images', 'add', shared, '--os', 'ol', '--release', '9', '--arch', 'amd64', '--json']);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ linked: false });
    const sha = await sha256Of(shared);
    expect((await stat(blobOf(sha))).ino).not.toBe((await stat(shared)).ino);
    expect((await stat(shared)).mode & 0o777).toBe(0o664);

    // Owned by another user (nobody), not writable by others: still not ours to take.
    const theirs = await rootTarball('centos');
    await chown(theirs, 65534, 65534);
    await chmod(theirs, 0o644);
    const b = await mm(['images', 'add', theirs, '--os', 'centos', '--release', '9', '--arch', 'amd64', '--json']);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ linked: false });
    const st = await stat(theirs);
    expect((await stat(blobOf(await sha256Of(theirs)))).ino).not.toBe(st.ino);
    expect([st.mode & 0o777, st.uid]).toEqual([0o644, 65534]);

    // Writing into the originals afterwards leaves the stored images intact.
    await appendFile(shared, 'later');
    await appendFile(theirs, 'later');
    const v = await mm(['verify', '--json']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    for (const r of ['ol/9/amd64', 'centos/9/amd64']) expect((await mm(['images', 'remove', r])).code).toBe(0);
  });
});
