import { readFile, readlink, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, makeKey, type Env } from '../helpers/env.js';
import { itemPaths, readCurrent, sha256File, versionsOf } from '../helpers/tree.js';
import { loadKeyring } from '../../src/pgp/keyring.js';
import { verifyClearsigned } from '../../src/pgp/verify.js';
import { writeHold } from '../../src/store/hold.js';
import { Layout } from '../../src/store/layout.js';
import { readManifest } from '../../src/store/manifest.js';
import { switchCurrent } from '../../src/store/snapshots.js';

const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const JAMMY_AMD64 = 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04';
const V3 = 'com.ubuntu.maas:stable:v3:download';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** Every regular file under dir (relative path) with its inode, size and mtime: what a write would change. */
async function statTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath, e.name);
    const st = await stat(full);
    out.set(full.slice(dir.length + 1), `${st.ino}:${st.size}:${st.mtimeMs}`);
  }
  return out;
}

/** A configuration that signs with a key other than the one generated at the first sync. */
async function newSigningKey(e: Env): Promise<{ next: Awaited<ReturnType<typeof makeKey>>; config: ReturnType<Env['config']> }> {
  const next = await makeKey(e.dir, 'mirror-next');
  const keyFile = join(e.dir, 'mirror-next.asc');
  await writeFile(keyFile, next.privateKey.armor());
  return { next, config: e.config([{}], { publish: { signingKey: keyFile } }) };
}

async function blobCount(dataDir: string): Promise<number> {
  let n = 0;
  for (const shard of await readdir(join(dataDir, 'blobs/sha256')).catch(() => [])) {
    n += (await readdir(join(dataDir, 'blobs/sha256', shard))).length;
  }
  return n;
}

describe('sync: a cold mirror of a signed upstream', () => {
  it('fetches, verifies and publishes the newest version of every product', async () => {
    env = await makeEnv();
    const report = await env.sync();
    expect(report.failures).toEqual([]);
    expect(report.result).toBe('ok');
    expect(report.published).toBe(true);

    const tree = await readCurrent(env.dataDir);
    const versions = versionsOf(tree);
    expect(versions[NOBLE_AMD64]).toEqual(['20250709']);
    expect(versions[JAMMY_AMD64]).toEqual(['20250718']);
    expect(versions['com.ubuntu.maas.stable:1:pxelinux:pxe:i386']).toEqual(['20210203.0']);
    expect(versions['com.ubuntu.maas.stable:centos-bases:8:amd64']).toEqual(['20211104_01']);

    // Every listed item is in the tree, with the bytes its metadata promises.
    const upstreamFiles = env.upstream.files();
    for (const path of itemPaths(tree)) {
      const expected = upstreamFiles.get(path)!;
      expect(await sha256File(join(tree.root, path))).toBe(expected.sha256);
    }
    // Hard links to the store: one inode, no copy.
    const anyItem = [...itemPaths(tree)][0]!;
    const st = await stat(join(tree.root, anyItem));
    expect(st.nlink).toBeGreaterThanOrEqual(2);
    // Metadata in all three forms, for the index and every products file.
    for (const base of ['streams/v1/index', `streams/v1/${V3}`]) {
      for (const ext of ['.json', '.sjson', '.json.gpg']) expect(tree.files).toContain(base + ext);
    }
    expect(report.downloaded.files).toBe(await blobCount(env.dataDir));
  });

  it('writes index.sjson entries pointing at .sjson and index.json entries at .json', async () => {
    env = await makeEnv();
    await env.sync();
    const root = join(env.dataDir, 'current');
    const plain = JSON.parse(await readFile(join(root, 'streams/v1/index.json'), 'utf8'));
    const signed = await readFile(join(root, 'streams/v1/index.sjson'), 'utf8');
    expect(signed.split('\n')[1]).toMatch(/^Hash: SHA(256|512)$/);
    for (const e of Object.values(plain.index) as { path: string }[]) expect(e.path).toMatch(/\.json$/);
    const body = signed.slice(signed.indexOf('\n\n') + 2, signed.indexOf('-----BEGIN PGP SIGNATURE-----'));
    for (const e of Object.values(JSON.parse(body).index) as { path: string }[]) expect(e.path).toMatch(/\.sjson$/);
  });
});

describe('sync: signatures', () => {
  it('rejects a source whose index is signed by a key not in the keyring, naming key and keyring', async () => {
    env = await makeEnv();
    const other = await makeKey(env.dir, 'other');
    const report = await env.sync({ config: env.config([{ keyring: other.keyring }]) });
    expect(report.result).toBe('failed');
    expect(report.published).toBe(false);
    expect(report.failures[0]!.code).toBe('MM_SIGNATURE_INVALID');
    expect(report.failures[0]!.message).toContain(env.key.privateKey.getKeyID().toHex().toUpperCase());
    expect(report.failures[0]!.message).toContain(other.keyring);
    expect(await blobCount(env.dataDir)).toBe(0);
  });

  it('verifies unchanged (304) documents again when the keyring changed', async () => {
    env = await makeEnv();
    expect((await env.sync()).result).toBe('ok');
    const other = await makeKey(env.dir, 'other');
    const before = env.server.log.length;
    const r = await env.sync({ config: env.config([{ keyring: other.keyring }]) });
    expect(env.server.log.slice(before).every((l) => l.status === 304)).toBe(true);
    expect(r.result).toBe('failed');
    expect(r.failures[0]!.code).toBe('MM_SIGNATURE_INVALID');
  });

  it('rejects a tampered products file (bad signature) and publishes nothing from it', async () => {
    env = await makeEnv();
    const path = join(env.upstream.dir, `streams/v1/${V3}.sjson`);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('"release": "noble"', '"release": "nobbl"'));
    const report = await env.sync();
    expect(report.failures.map((f) => f.code)).toContain('MM_SIGNATURE_INVALID');
    expect(report.failures[0]!.message).toMatch(/does not verify/);
    await expect(stat(join(env.dataDir, 'current'))).rejects.toThrow();
  });

  it('rejects an unsigned document where a signed one is expected', async () => {
    env = await makeEnv();
    await env.upstream.writeFile('streams/v1/index.sjson', await readFile(join(env.upstream.dir, 'streams/v1/index.json')));
    const report = await env.sync();
    expect(report.result).toBe('failed');
    expect(report.failures[0]!.message).toMatch(/not an OpenPGP clear-signed document/);
  });

  it('reads an unsigned .json mirror only with verify: false', async () => {
    env = await makeEnv();
    const report = await env.sync({ config: env.config([{ verify: false }]) });
    expect(report.result).toBe('ok');
    expect(env.server.requests('streams/v1/index.json').length).toBe(1);
    expect(env.server.requests(/\.sjson$/).length).toBe(0);
  });

  it('fails a source whose saved state is unreadable instead of dropping its replay protection', async () => {
    env = await makeEnv();
    await env.sync();
    const current = await readlink(join(env.dataDir, 'current'));
    const file = join(env.dataDir, 'state', 'stable.json');
    await writeFile(file, '{"documents": ');
    const r = await env.sync();
    expect(r.result).not.toBe('ok');
    const f = r.failures.find((x) => x.code === 'MM_STATE_INVALID');
    expect(f?.message).toContain(file);
    expect(f?.message).toMatch(/move it aside/);
    expect(await readlink(join(env.dataDir, 'current'))).toBe(current);
    // The bad file is left for the operator to look at.
    expect(await readFile(file, 'utf8')).toBe('{"documents": ');
  });

  it('refuses an older, validly signed index replayed by the upstream', async () => {
    env = await makeEnv({ date: new Date('2025-07-24T09:00:00Z') });
    expect((await env.sync()).result).toBe('ok');
    const first = await readlink(join(env.dataDir, 'current'));
    await env.upstream.write(new Date('2025-06-01T09:00:00Z'));
    const replay = await env.sync();
    expect(replay.result).toBe('failed');
    expect(replay.failures[0]!.code).toBe('MM_DOWNGRADE_REFUSED');
    expect(await readlink(join(env.dataDir, 'current'))).toBe(first);
    const allowed = await env.sync({ allowDowngrade: true });
    expect(allowed.failures).toEqual([]);
  });
});

describe('sync: selection', () => {
  it('applies filter groups (AND within, OR across) and each operator', async () => {
    env = await makeEnv();
    const config = env.config([
      {
        filters: [
          ['os=ubuntu', 'arch=amd64', 'release~^(jammy|noble)$', 'ftype!=root-tgz'],
          ['bootloader-type~.', 'arch!~^(ppc64el|i386)$'],
        ],
      },
    ]);
    await env.sync({ config });
    const versions = versionsOf(await readCurrent(env.dataDir));
    expect(Object.keys(versions).sort()).toEqual(
      [
        JAMMY_AMD64,
        NOBLE_AMD64,
        'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64',
        'com.ubuntu.maas.stable:1:grub-efi:uefi:arm64',
        'com.ubuntu.maas.stable:1:pxelinux:pxe:amd64',
      ].sort(),
    );
  });

  it('leaves out products whose filtered versions MAAS would reject, keeping what was published before', async () => {
    env = await makeEnv();
    const good = [['os=ubuntu', 'arch=amd64', 'release~^(jammy|noble)$'], ['bootloader-type~.']];
    await env.sync({ config: env.config([{ filters: good }]) });
    const before = await readlink(join(env.dataDir, 'current'));
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    // Without its manifest item a version is one MAAS refuses, and with it the whole products file.
    const bad = [['os=ubuntu', 'arch=amd64', 'release~^(jammy|noble)$', 'ftype!=manifest'], ['bootloader-type~.']];
    const r = await env.sync({ config: env.config([{ filters: bad }]) });
    expect(r.result).toBe('partial');
    const rejected = r.failures.filter((f) => f.code === 'MM_MAAS_RULES');
    expect(rejected.map((f) => f.message).join('\n')).toContain(NOBLE_AMD64);
    expect(rejected[0]!.message).toMatch(/manifest/);
    // The products stay at what MAAS already has; nothing MAAS would reject is published.
    expect(await readlink(join(env.dataDir, 'current'))).toBe(before);
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toEqual(['20250709']);
    const cold = await makeEnv();
    try {
      const r2 = await cold.sync({ config: cold.config([{ filters: [['os=ubuntu', 'ftype!=manifest']] }]) });
      expect(r2.result).not.toBe('ok');
      expect(r2.published).toBe(false);
      expect(r2.failures.some((f) => f.code === 'MM_MAAS_RULES')).toBe(true);
    } finally {
      await cold.close();
    }
  });

  it('keeps the newest maxVersions per product in byte order of version keys', async () => {
    env = await makeEnv();
    env.upstream.addVersion('com.ubuntu.maas.stable:1:pxelinux:pxe:i386', '20210203.10');
    await env.upstream.write();
    await env.sync({ config: env.config([{ maxVersions: 2 }]) });
    const versions = versionsOf(await readCurrent(env.dataDir));
    expect(versions[NOBLE_AMD64]).toEqual(['20250618', '20250709']);
    // '20210203.10' < '20210203.0'? No: byte order puts '.1' after '.0', so .10 is newest.
    expect(versions['com.ubuntu.maas.stable:1:pxelinux:pxe:i386']).toEqual(['20210203.0', '20210203.10']);
  });

  it('selects content ids by regex', async () => {
    env = await makeEnv();
    await env.sync({ config: env.config([{ contentIds: ['bootloader'] }]) });
    const tree = await readCurrent(env.dataDir);
    expect(Object.keys(tree.index.index)).toEqual(['com.ubuntu.maas:stable:1:bootloader-download']);
    expect(env.server.requests(V3).length).toBe(0);
  });
});

describe('sync: the store', () => {
  it('downloads a path shared by several items once', async () => {
    env = await makeEnv();
    const { doc } = env.upstream.product(NOBLE_AMD64);
    const versions = doc.products[NOBLE_AMD64]!.versions;
    const newest = versions['20250709']!;
    newest.items['squashfs-copy'] = { ...newest.items.squashfs!, ftype: 'squashfs' };
    await env.upstream.write();
    await env.sync();
    const squash = newest.items.squashfs!.path;
    expect(env.server.requests(squash).length).toBe(1);
  });

  it('never downloads a sha256 the store holds, across versions, products and sources', async () => {
    env = await makeEnv();
    await env.sync();
    const before = env.server.log.length;
    // A second source at the same upstream: same files, nothing to fetch.
    const config = env.config([{ contentIds: ['v3'] }, { name: 'again', contentIds: ['bootloader'] }]);
    const r = await env.sync({ config });
    expect(r.downloaded.files).toBe(0);
    const itemRequests = env.server.log.slice(before).filter((l) => !l.path.startsWith('streams/'));
    expect(itemRequests).toEqual([]);
  });

  it('reports a source pair that publishes the same content id as a config error', async () => {
    env = await makeEnv();
    const r = await env.sync({ config: env.config([{}, { name: 'dup' }]) });
    expect(r.failures.some((f) => f.code === 'MM_CONTENT_CONFLICT')).toBe(true);
  });
});

describe('sync: resync', () => {
  it('makes no new snapshot and no blob I/O when nothing changed; one conditional request per document', async () => {
    env = await makeEnv();
    await env.sync();
    const first = await readlink(join(env.dataDir, 'current'));
    const before = env.server.log.length;
    const filesBefore = await statTree(env.dataDir);
    const r = await env.sync();
    expect(r.published).toBe(false);
    expect(r.downloaded.bytes).toBe(0);
    expect(await readlink(join(env.dataDir, 'current'))).toBe(first);
    const reqs = env.server.log.slice(before);
    expect(reqs.every((q) => q.path.startsWith('streams/v1/') && q.conditional && q.status === 304)).toBe(true);
    expect(reqs.length).toBe(1 + env.upstream.products.size);
    // No blob written, no snapshot made, nothing re-signed: the blobs and snapshots are the same files, untouched.
    const filesAfter = await statTree(env.dataDir);
    for (const dir of ['blobs', 'snapshots']) {
      const pick = (m: Map<string, string>) => [...m].filter(([f]) => f.startsWith(`${dir}/`));
      expect(pick(filesAfter)).toEqual(pick(filesBefore));
      expect(pick(filesBefore).length).toBeGreaterThan(0);
    }
  });

  it('re-signs the tree when the signing key changes, even with nothing new upstream', async () => {
    env = await makeEnv();
    await env.sync();
    const first = await readlink(join(env.dataDir, 'current'));
    const { next, config } = await newSigningKey(env);
    const r = await env.sync({ config });
    expect(r.published).toBe(true);
    expect(r.downloaded.bytes).toBe(0);
    expect(await readlink(join(env.dataDir, 'current'))).not.toBe(first);
    const index = await readFile(join(env.dataDir, 'current', 'streams', 'v1', 'index.sjson'), 'utf8');
    const keyring = await loadKeyring(next.keyring);
    await expect(verifyClearsigned(index, keyring, 'index.sjson')).resolves.toBeDefined();
    expect((await env.sync({ config })).published).toBe(false);
  });

  it('keeps a rollback hold, and on a new signing key re-signs the held tree, not the newest', async () => {
    env = await makeEnv();
    await env.sync();
    const layout = new Layout(env.dataDir);
    const a = basename(await readlink(layout.current));
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    await env.sync();
    const b = basename(await readlink(layout.current));
    // What `maas-mirror rollback` leaves: current on the older snapshot, and the hold.
    await writeHold(layout, { snapshot: a, newest: b, newestFingerprint: (await readManifest(layout, b)).fingerprint, since: new Date().toISOString() });
    await switchCurrent(layout, a);
    expect((await env.sync()).published).toBe(false);
    expect(basename(await readlink(layout.current))).toBe(a);

    const { next, config } = await newSigningKey(env);
    const r = await env.sync({ config });
    expect(r.published).toBe(true);
    const c = basename(await readlink(layout.current));
    expect([a, b]).not.toContain(c);
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toEqual(['20250709']);
    const index = await readFile(join(env.dataDir, 'current', 'streams', 'v1', 'index.sjson'), 'utf8');
    await expect(verifyClearsigned(index, await loadKeyring(next.keyring), 'index.sjson')).resolves.toBeDefined();
    expect(JSON.parse(await readFile(layout.holdFile, 'utf8'))).toMatchObject({ snapshot: c, newest: b });
    expect((await env.sync({ config })).published).toBe(false);
    expect(basename(await readlink(layout.current))).toBe(c);
  });

  it('publishes a new snapshot when upstream adds a version, fetching only the new files', async () => {
    env = await makeEnv();
    await env.sync();
    const first = await readlink(join(env.dataDir, 'current'));
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    const r = await env.sync();
    expect(r.published).toBe(true);
    expect(r.plan.changes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ action: '+', productId: NOBLE_AMD64, version: '20250801' }),
        expect.objectContaining({ action: '-', productId: NOBLE_AMD64, version: '20250709' }),
      ]),
    );
    expect(r.downloaded.files).toBe(4);
    expect(await readlink(join(env.dataDir, 'current'))).not.toBe(first);
  });
});
