import { appendFile, copyFile, mkdir, readFile, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { walk } from '../helpers/tree.js';
import { checkTree, cli, fatUnsafeNames, run, writeConfig } from './helpers.js';

const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

interface ExportJson {
  snapshot: string;
  since?: string;
  signedBy: string;
  files: { path: string; sha256: string; size: number; status: string }[];
  metadata: string[];
  written: { files: number; bytes: number };
  omitted: { files: number };
}

/** A real root tarball made by tar(1). */
async function rootTarball(dir: string, name: string): Promise<string> {
  const root = join(dir, `root-${name}`);
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'os-release'), `NAME="${name}"\n`);
  const out = join(dir, `${name}.tar.gz`);
  await run('tar', ['-czf', out, '-C', root, '.']);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('air-gapped sites: HQ exports, a site with no network source imports', () => {
  it('full export, --since delta, re-signed on the site, FAT-safe names, replay refused', async () => {
    env = await makeEnv();
    const e = env;
    const hq = await writeConfig(join(e.dir, 'hq.yaml'), join(e.dir, 'hq'), { name: 'stable', url: e.server.url, keyring: e.key.keyring });

    // HQ: sync over HTTP, export everything.
    expect((await cli(['sync', '--config', hq])).code).toBe(0);
    const exp1 = join(e.dir, 'usb1', 'maas');
    const r1 = await cli(['export', exp1, '--config', hq, '--json']);
    expect(r1.stderr).toBe('');
    expect(r1.code).toBe(0);
    const full = JSON.parse(r1.stdout) as ExportJson;
    expect(full.files.length).toBeGreaterThan(10);
    expect(full.files.every((f) => f.status === 'written')).toBe(true);
    expect(await fatUnsafeNames(exp1)).toEqual([]);
    // The upstream's names hold ":" (the fixture's products files do), so the renaming was needed.
    expect((await walk(e.upstream.dir)).some((f) => f.includes(':'))).toBe(true);
    // The export is itself a tree MAAS and gpgv take, signed by HQ's key (keyring.gpg beside it).
    const hqVersions1 = await checkTree(exp1, join(exp1, 'keyring.gpg'));
    expect(hqVersions1[NOBLE]).toBeDefined();
    const readme = await readFile(join(exp1, 'README.txt'), 'utf8');
    expect(readme).toContain(full.snapshot);
    expect(readme.replace(/ /g, '')).toContain(full.signedBy);
    // The fingerprint a site checks out of band is the one of the key on the disk.
    const shown = await run('gpg', ['--with-colons', '--show-keys', join(exp1, 'keyring.gpg')], { env: { ...process.env, GNUPGHOME: e.dir } });
    expect(/^fpr:+([0-9A-F]{40}):/m.exec(shown.stdout)?.[1]).toBe(full.signedBy);

    // Upstream moves on; HQ syncs and exports only what the first export did not hold.
    await sleep(1100); // the delta's date must be a later second than the full export's
    e.upstream.addVersion(NOBLE, '20990101');
    await e.upstream.write();
    expect((await cli(['sync', '--config', hq])).code).toBe(0);
    const exp2 = join(e.dir, 'usb2', 'maas');
    const r2 = await cli(['export', exp2, '--since', full.snapshot, '--config', hq, '--json']);
    expect(r2.code).toBe(0);
    const delta = JSON.parse(r2.stdout) as ExportJson;
    expect(delta.since).toBe(full.snapshot);
    const oldShas = new Set(full.files.map((f) => f.sha256));
    const written = delta.files.filter((f) => f.status === 'written');
    expect(written.length).toBeGreaterThan(0);
    expect(written.every((f) => !oldShas.has(f.sha256))).toBe(true);
    expect(delta.omitted.files).toBeGreaterThan(written.length);
    expect(delta.written.bytes).toBeLessThan(full.written.bytes);
    expect(await fatUnsafeNames(exp2)).toEqual([]);

    // The site: its only source is the disk. HQ's key is checked once, out of band.
    const siteKeyring = join(e.dir, 'hq.gpg');
    await copyFile(join(exp1, 'keyring.gpg'), siteKeyring);
    const siteData = join(e.dir, 'site');
    const site = (url: string) => writeConfig(join(e.dir, 'site.yaml'), siteData, { name: 'hq', url, keyring: siteKeyring });
    await site(exp1); // an absolute path
    const s1 = await cli(['sync', '--config', join(e.dir, 'site.yaml')]);
    expect(s1.stdout + s1.stderr).not.toMatch(/MM_/);
    expect(s1.code).toBe(0);
    const siteKey = join(siteData, 'keys', 'public.gpg');
    expect(await checkTree(join(siteData, 'current'), siteKey)).toEqual(hqVersions1);
    await expect(checkTree(join(siteData, 'current'), join(exp1, 'keyring.gpg'))).rejects.toThrow(); // re-signed: HQ's key does not verify it

    await site(pathToFileURL(exp2).href + '/'); // a file:/// URL
    const s2 = await cli(['sync', '--config', join(e.dir, 'site.yaml')]);
    expect(s2.stdout + s2.stderr).not.toMatch(/MM_/);
    expect(s2.code).toBe(0);
    const hqNow = await checkTree(join(e.dir, 'hq', 'current'), join(e.dir, 'hq', 'keys', 'public.gpg'));
    expect(await checkTree(join(siteData, 'current'), siteKey)).toEqual(hqNow);
    expect(hqNow[NOBLE]).toEqual(['20990101']);

    // The first disk again: older than what was imported, refused; the current tree stays.
    const before = await readlink(join(siteData, 'current'));
    await site(exp1);
    const replay = await cli(['sync', '--config', join(e.dir, 'site.yaml')]);
    expect(replay.code).toBe(1);
    expect(replay.stdout).toContain('MM_DOWNGRADE_REFUSED');
    expect(replay.stdout).toContain(join(exp1, 'streams/v1/index.sjson'));
    expect(await readlink(join(siteData, 'current'))).toBe(before);
    // Unless the operator says so.
    const forced = await cli(['sync', '--allow-downgrade', '--config', join(e.dir, 'site.yaml')]);
    expect(forced.code).toBe(0);
    expect(await checkTree(join(siteData, 'current'), siteKey)).toEqual(hqVersions1);
  });

  it('a delta imported without the export before it: missing items are named (MM_ITEM_MISSING), the rest publishes', async () => {
    env = await makeEnv();
    const e = env;
    const hq = await writeConfig(join(e.dir, 'hq.yaml'), join(e.dir, 'hq'), { name: 'stable', url: e.server.url, keyring: e.key.keyring });
    expect((await cli(['sync', '--config', hq])).code).toBe(0);
    const full = JSON.parse((await cli(['export', join(e.dir, 'full'), '--config', hq, '--json'])).stdout) as ExportJson;
    e.upstream.addVersion(NOBLE, '20990101');
    await e.upstream.write();
    expect((await cli(['sync', '--config', hq])).code).toBe(0);
    const exp2 = join(e.dir, 'delta');
    expect((await cli(['export', exp2, '--since', full.snapshot, '--config', hq])).code).toBe(0);

    const site = await writeConfig(join(e.dir, 'site.yaml'), join(e.dir, 'site'), { name: 'hq', url: exp2, keyring: join(exp2, 'keyring.gpg') });
    const r = await cli(['sync', '--config', site, '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { published: boolean; failures: { code: string; message: string; path?: string }[] };
    const missing = report.failures.filter((f) => f.code === 'MM_ITEM_MISSING');
    expect(missing.length).toBeGreaterThan(0);
    for (const f of missing) expect(f.message).toContain(f.path!);
    expect(report.failures.every((f) => f.code === 'MM_ITEM_MISSING')).toBe(true);
    // What the delta holds in full (the new version) is published.
    expect(report.published).toBe(true);
    const versions = await checkTree(join(e.dir, 'site', 'current'), join(e.dir, 'site', 'keys', 'public.gpg'));
    expect(versions[NOBLE]).toEqual(['20990101']);
    expect(Object.keys(versions).length).toBe(1);
  });

  it('an export re-run resumes: verified files are kept, a torn one is written again', async () => {
    env = await makeEnv();
    const e = env;
    const hq = await writeConfig(join(e.dir, 'hq.yaml'), join(e.dir, 'hq'), { name: 'stable', url: e.server.url, keyring: e.key.keyring });
    expect((await cli(['sync', '--config', hq])).code).toBe(0);
    const dir = join(e.dir, 'usb');
    const first = JSON.parse((await cli(['export', dir, '--config', hq, '--json'])).stdout) as ExportJson;
    const torn = first.files[0]!;
    const { truncate } = await import('node:fs/promises');
    await truncate(join(dir, torn.path), Math.floor(torn.size / 2));
    const again = JSON.parse((await cli(['export', dir, '--config', hq, '--json'])).stdout) as ExportJson;
    expect(again.files.filter((f) => f.status === 'written').map((f) => f.path)).toEqual([torn.path]);
    expect(again.files.filter((f) => f.status === 'kept').length).toBe(first.files.length - 1);
    expect((await stat(join(dir, torn.path))).size).toBe(torn.size);
    expect(await realpath(dir)).toBe(dir);
  });

  it("HQ's site-built images reach the site's MAAS, beside the site's own", async () => {
    env = await makeEnv();
    const e = env;
    const hq = await writeConfig(join(e.dir, 'hq.yaml'), join(e.dir, 'hq'), { name: 'stable', url: e.server.url, keyring: e.key.keyring });
    expect((await cli(['sync', '--config', hq])).code).toBe(0);
    const added = await cli(['images', 'add', await rootTarball(e.dir, 'hq-rhel'), '--os', 'rhel', '--release', '9', '--arch', 'amd64', '--config', hq]);
    expect(added.code, added.stderr).toBe(0);
    const exp = join(e.dir, 'usb');
    const x = await cli(['export', exp, '--config', hq, '--json']);
    expect(x.code, x.stderr).toBe(0);
    const signedBy = (JSON.parse(x.stdout) as ExportJson).signedBy;
    const hqImages = `local:custom-images:from-${signedBy.slice(-16).toLowerCase()}`;
    const onDisk = await checkTree(exp, join(exp, 'keyring.gpg'));
    expect(onDisk[`${hqImages}:rhel:9:amd64`]).toHaveLength(1);
    expect(await fatUnsafeNames(exp)).toEqual([]);

    // The site, with images.contentId at its default too, and an image of its own.
    const siteData = join(e.dir, 'site');
    const site = await writeConfig(join(e.dir, 'site.yaml'), siteData, { name: 'hq', url: exp, keyring: join(exp, 'keyring.gpg') });
    const own = await cli(['images', 'add', await rootTarball(e.dir, 'site-ol'), '--os', 'ol', '--release', '9', '--arch', 'amd64', '--config', site]);
    expect(own.code, own.stderr).toBe(0);
    const s = await cli(['sync', '--config', site, '--json']);
    expect(s.stdout + s.stderr).not.toMatch(/MM_/);
    expect(s.code).toBe(0);
    const published = await checkTree(join(siteData, 'current'), join(siteData, 'keys', 'public.gpg'));
    expect(published[`${hqImages}:rhel:9:amd64`]).toEqual(onDisk[`${hqImages}:rhel:9:amd64`]);
    expect(published['local:custom-images:ol:9:amd64']).toHaveLength(1);
    expect(published[NOBLE]).toEqual(onDisk[NOBLE]);
    // MAAS picks images by os/release/arch: HQ's carries them.
    const index = JSON.parse(await readFile(join(siteData, 'current', 'streams/v1/index.json'), 'utf8')) as { index: Record<string, { path: string }> };
    const doc = JSON.parse(await readFile(join(siteData, 'current', index.index[hqImages]!.path), 'utf8')) as { products: Record<string, Record<string, unknown>> };
    expect(doc.products[`${hqImages}:rhel:9:amd64`]).toMatchObject({ os: 'rhel', release: '9', arch: 'amd64' });
  });

  it('a blob missing from the store (quarantined by verify) is named and its version left out, the rest exported; --since bogus is exit 2', async () => {
    env = await makeEnv();
    const e = env;
    const hq = await writeConfig(join(e.dir, 'hq.yaml'), join(e.dir, 'hq'), { name: 'stable', url: e.server.url, keyring: e.key.keyring });
    expect((await cli(['sync', '--config', hq])).code).toBe(0);
    const before = await checkTree(join(e.dir, 'hq', 'current'), join(e.dir, 'hq', 'keys', 'public.gpg'));
    const newest = before[NOBLE]!.at(-1)!;
    // One file of noble's newest version goes bad in the store; verify quarantines it.
    const probe = JSON.parse((await cli(['export', join(e.dir, 'probe'), '--config', hq, '--json'])).stdout) as ExportJson;
    const victim = probe.files.find((f) => f.path.includes(newest) && f.path.includes('24.04'))!;
    const blob = join(e.dir, 'hq', 'blobs', 'sha256', victim.sha256.slice(0, 2), victim.sha256);
    await appendFile(blob, 'rot');
    const verified = await cli(['verify', '--config', hq]);
    expect(verified.code).not.toBe(0);

    const dir = join(e.dir, 'usb');
    const r = await cli(['export', dir, '--config', hq, '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as ExportJson & { unreadable: { path: string; code: string; message: string }[] };
    expect(report.unreadable).toHaveLength(1);
    expect(report.unreadable[0]!.code).toBe('MM_EXPORT_BLOB_UNREADABLE');
    expect(report.unreadable[0]!.message).toContain('cannot be read from the store');
    expect(report.unreadable[0]!.message).not.toContain('mounted writable');
    expect(report.files.filter((f) => f.status === 'written').length).toBe(probe.files.length - 1);
    // The export is a valid signed tree without that version; every other version is there.
    const exported = await checkTree(dir, join(dir, 'keyring.gpg'));
    const left = before[NOBLE]!.filter((v) => v !== newest);
    expect(exported[NOBLE]).toEqual(left.length > 0 ? left : undefined);
    for (const [pid, versions] of Object.entries(before)) if (pid !== NOBLE) expect(exported[pid]).toEqual(versions);

    const bogus = await cli(['export', join(e.dir, 'usb2'), '--since', 'bogus', '--config', hq]);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toContain('--since bogus is not a snapshot id');
    const unknown = await cli(['export', join(e.dir, 'usb3'), '--since', '20200101T000000000Z-abcdef', '--config', hq]);
    expect(unknown.code).toBe(2);
  });
});
