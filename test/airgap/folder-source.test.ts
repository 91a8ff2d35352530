import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, open, readdir, readlink, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { exportSnapshot, type ExportReport } from '../../src/mirror/export.js';
import { loadOrCreateSigningKey } from '../../src/pgp/keys.js';
import { BlobStore } from '../../src/store/blobs.js';
import { Layout } from '../../src/store/layout.js';
import { makeEnv, makeKey, type Env } from '../helpers/env.js';
import { walk } from '../helpers/tree.js';
import { checkTree, cli, WITHOUT_DAC_OVERRIDE, writeConfig } from './helpers.js';
import type { SyncReport } from '../../src/mirror/sync.js';

const run = promisify(execFile);
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

let env: Env | undefined;
let unmount: (() => Promise<void>) | undefined;
afterEach(async () => {
  // The mount first: the folder it sits in goes with env.
  await unmount?.();
  unmount = undefined;
  await env?.close();
  env = undefined;
});

/** HQ (env.dataDir) synced from the generated upstream and exported to `dir`. */
async function hqExport(e: Env, dir: string, since?: string, maxVersions?: number): Promise<ExportReport> {
  const r = await e.sync({ config: e.config([{ maxVersions }]) });
  expect(r.result).toBe('ok');
  const layout = new Layout(e.dataDir);
  return exportSnapshot({
    layout,
    store: new BlobStore(layout),
    key: await loadOrCreateSigningKey(layout.keysDir, undefined),
    dir,
    since,
    logger: silentLogger(),
  });
}

/** A site mirror syncing from the folder `url` with `keyring`, in-process. */
function siteSync(e: Env, url: string, keyring: string, extra: { allowDowngrade?: boolean } = {}) {
  const config = e.config([{ name: 'hq', url, keyring }], { dataDir: join(e.dir, 'site') });
  return e.sync({ config, ...extra });
}

async function blobCount(dataDir: string): Promise<number> {
  return (await walk(join(dataDir, 'blobs')).catch(() => [])).length;
}

describe('folder sources', () => {
  it('read-only media: a read-only bind mount imports, and nothing on it is opened for writing', async () => {
    env = await makeEnv();
    const exp = join(env.dir, 'export');
    const report = await hqExport(env, exp);
    const media = join(env.dir, `media-${process.pid}`);
    await mkdir(media);
    await run('mount', ['--bind', exp, media]);
    unmount = async () => {
      await run('umount', [media]);
    };
    await run('mount', ['-o', 'remount,bind,ro', media]);
    const r = await siteSync(env, media, join(media, 'keyring.gpg'));
    expect(r.failures).toEqual([]);
    expect(r.published).toBe(true);
    // Another mount: nothing could be linked, every blob is a copy of its own.
    const site = join(env.dir, 'site');
    const layout = new Layout(site);
    for (const f of report.files) {
      const blob = await stat(layout.blob(f.sha256));
      expect(blob.ino === (await stat(join(media, f.path))).ino && blob.dev === (await stat(join(media, f.path))).dev).toBe(false);
      expect((await stat(join(exp, f.path))).mode & 0o777).toBe(0o644);
    }
    await checkTree(join(site, 'current'), join(site, 'keys', 'public.gpg'));
    // A resync of the unchanged disk reads the documents' stamps and publishes nothing.
    const again = await siteSync(env, media, join(media, 'keyring.gpg'));
    expect(again.published).toBe(false);
    expect(again.sources[0]!.changedDocuments).toBe(0);
    expect(again.downloaded.files).toBe(0);
  });

  it('same filesystem: a file owned here and writable by no one else is hard-linked and made read-only; others are copied', async () => {
    env = await makeEnv();
    const exp = join(env.dir, 'export');
    const report = await hqExport(env, exp);
    const linked = report.files[0]!;
    const copied = report.files[1]!;
    await run('chmod', ['0664', join(exp, copied.path)]);
    const r = await siteSync(env, exp, join(exp, 'keyring.gpg'));
    expect(r.failures).toEqual([]);
    const site = new Layout(join(env.dir, 'site'));
    const blob = await stat(site.blob(linked.sha256));
    const onDisk = await stat(join(exp, linked.path));
    expect(blob.ino).toBe(onDisk.ino);
    expect(blob.mode & 0o777).toBe(0o444);
    const copy = await stat(site.blob(copied.sha256));
    expect(copy.ino).not.toBe((await stat(join(exp, copied.path))).ino);
    expect((await stat(join(exp, copied.path))).mode & 0o777).toBe(0o664);
  });

  it('a missing folder, or an index that cannot be read: an error naming the file, the current snapshot stays', async () => {
    env = await makeEnv();
    const exp = join(env.dir, 'export');
    await hqExport(env, exp);
    const keyring = join(env.dir, 'hq.gpg');
    await cp(join(exp, 'keyring.gpg'), keyring);
    expect((await siteSync(env, exp, keyring)).published).toBe(true);
    const site = join(env.dir, 'site');
    const current = await readlink(join(site, 'current'));
    const blobs = await blobCount(site);

    const gone = join(env.dir, `not-mounted-${process.pid}`);
    const r1 = await siteSync(env, gone, keyring);
    expect(r1.result).toBe('failed');
    expect(r1.failures).toHaveLength(1);
    expect(r1.failures[0]!.code).toBe('MM_SOURCE_FOLDER');
    expect(r1.failures[0]!.message).toContain(join(gone, 'streams/v1/index.sjson'));
    expect(r1.failures[0]!.message).toContain('no such file');

    const broken = join(env.dir, 'broken');
    await cp(exp, broken, { recursive: true });
    await rm(join(broken, 'streams/v1/index.sjson'));
    await mkdir(join(broken, 'streams/v1/index.sjson'));
    const r2 = await siteSync(env, broken, keyring);
    expect(r2.failures[0]!.code).toBe('MM_SOURCE_FOLDER');
    expect(r2.failures[0]!.message).toContain(join(broken, 'streams/v1/index.sjson'));

    expect(await readlink(join(site, 'current'))).toBe(current);
    expect(await blobCount(site)).toBe(blobs);
  });

  it('a tree signed by another key is refused, naming the file; nothing is stored', async () => {
    env = await makeEnv();
    const exp = join(env.dir, 'export');
    await hqExport(env, exp);
    const stranger = await makeKey(env.dir, 'stranger');
    const r = await siteSync(env, exp, stranger.keyring);
    expect(r.result).toBe('failed');
    expect(r.failures[0]!.code).toBe('MM_SIGNATURE_INVALID');
    expect(r.failures[0]!.message).toContain(join(exp, 'streams/v1/index.sjson'));
    expect(r.published).toBe(false);
    expect(await blobCount(join(env.dir, 'site'))).toBe(0);
  });

  it('a truncated file on the disk: named, not stored, and that product keeps its previous version', async () => {
    env = await makeEnv();
    const keyring = join(env.dir, 'hq.gpg');
    const exp1 = join(env.dir, 'export1');
    await hqExport(env, exp1);
    await cp(join(exp1, 'keyring.gpg'), keyring);
    expect((await siteSync(env, exp1, keyring)).published).toBe(true);
    const site = join(env.dir, 'site');
    const before = await checkTree(join(site, 'current'), join(site, 'keys', 'public.gpg'));

    await new Promise((r) => setTimeout(r, 1100));
    env.upstream.addVersion(NOBLE, '20990101');
    await env.upstream.write();
    const exp2 = join(env.dir, 'export2');
    const report = await hqExport(env, exp2);
    const victim = report.files.find((f) => f.path.includes('20990101'))!;
    await truncate(join(exp2, victim.path), Math.floor(victim.size / 3));

    const r = await siteSync(env, exp2, keyring);
    expect(r.result).toBe('partial');
    const f = r.failures.find((x) => x.code === 'MM_SIZE_MISMATCH')!;
    expect(f.message).toContain(join(exp2, victim.path));
    expect(r.failures.every((x) => x.code === 'MM_SIZE_MISMATCH')).toBe(true);
    const layout = new Layout(site);
    expect(await new BlobStore(layout).has(victim.sha256)).toBe(false);
    expect(await readdir(layout.partialDir).catch(() => [])).toEqual([]);
    const after = await checkTree(join(site, 'current'), join(site, 'keys', 'public.gpg'));
    expect(after[NOBLE]).toEqual(before[NOBLE]);
  });

  it('a file with the right size but other bytes: linked or not, it is hashed and refused, and the disk file is left as it was', async () => {
    env = await makeEnv();
    const exp = join(env.dir, 'export');
    const report = await hqExport(env, exp);
    const victim = report.files[0]!;
    const file = join(exp, victim.path);
    const fh = await open(file, 'r+');
    await fh.write(Buffer.from('X'), 0, 1, victim.size - 1);
    await fh.close();
    const r = await siteSync(env, exp, join(exp, 'keyring.gpg'));
    const f = r.failures.find((x) => x.code === 'MM_CHECKSUM_MISMATCH')!;
    expect(f.message).toContain(file);
    expect(await new BlobStore(new Layout(join(env.dir, 'site'))).has(victim.sha256)).toBe(false);
    expect((await stat(file)).nlink).toBe(1);
    expect((await stat(file)).mode & 0o777).toBe(0o644);
  });

  it('filters and maxVersions apply to a folder source as to a server', async () => {
    env = await makeEnv();
    env.upstream.addVersion(NOBLE, '20990101');
    await env.upstream.write();
    const exp = join(env.dir, 'export');
    await hqExport(env, exp, undefined, 2);
    expect(await checkTree(exp, join(exp, 'keyring.gpg'))).toMatchObject({ [NOBLE]: [expect.any(String), '20990101'] });
    const config = env.config([{ name: 'hq', url: exp, keyring: join(exp, 'keyring.gpg'), filters: [['release=noble']], maxVersions: 1 }], {
      dataDir: join(env.dir, 'site'),
    });
    const r = await env.sync({ config });
    expect(r.failures).toEqual([]);
    const versions = await checkTree(join(env.dir, 'site', 'current'), join(env.dir, 'site', 'keys', 'public.gpg'));
    expect(Object.keys(versions).length).toBeGreaterThan(0);
    expect(Object.keys(versions).every((pid) => pid.includes(':24.04:'))).toBe(true);
    expect(Object.values(versions).every((v) => v.length === 1)).toBe(true);
    expect(versions[NOBLE]).toEqual(['20990101']);
  });

  it('unreadable (permission denied): a folder, then an item file; each named, the current snapshot stays', async () => {
    env = await makeEnv();
    const exp1 = join(env.dir, 'export1');
    await hqExport(env, exp1);
    const keyring = join(env.dir, 'hq.gpg');
    await cp(join(exp1, 'keyring.gpg'), keyring);
    const siteDir = join(env.dir, 'site');
    expect((await siteSync(env, exp1, keyring)).published).toBe(true);
    const current = await readlink(join(siteDir, 'current'));
    const before = await checkTree(join(siteDir, 'current'), join(siteDir, 'keys', 'public.gpg'));

    await new Promise((r) => setTimeout(r, 1100));
    env.upstream.addVersion(NOBLE, '20990101');
    await env.upstream.write();
    const exp = join(env.dir, 'export2');
    const report = await hqExport(env, exp);
    const config = await writeConfig(join(env.dir, 'site.yaml'), siteDir, { name: 'hq', url: exp, keyring });

    await chmod(exp, 0o000);
    const r1 = await cli(['sync', '--config', config, '--json'], {}, WITHOUT_DAC_OVERRIDE);
    await chmod(exp, 0o755);
    expect(r1.code).toBe(1);
    const f1 = (JSON.parse(r1.stdout) as SyncReport).failures;
    expect(f1).toEqual([
      expect.objectContaining({ code: 'MM_SOURCE_FOLDER', message: expect.stringContaining(`${join(exp, 'streams/v1/index.sjson')}: permission denied`) }),
    ]);
    expect(await readlink(join(siteDir, 'current'))).toBe(current);

    const victim = report.files.find((f) => f.path.includes('20990101'))!;
    await chmod(join(exp, victim.path), 0o000);
    const r2 = await cli(['sync', '--config', config, '--json'], {}, WITHOUT_DAC_OVERRIDE);
    expect(r2.code).toBe(1);
    const rep2 = JSON.parse(r2.stdout) as SyncReport;
    expect(rep2.failures).toEqual([
      expect.objectContaining({ code: 'MM_SOURCE_FOLDER', message: expect.stringContaining(`${join(exp, victim.path)}: permission denied`) }),
    ]);
    expect(await new BlobStore(new Layout(siteDir)).has(victim.sha256)).toBe(false);
    const after = await checkTree(join(siteDir, 'current'), join(siteDir, 'keys', 'public.gpg'));
    expect(after[NOBLE]).toEqual(before[NOBLE]);
  });

  it('a FIFO on the disk, at the index or at an item path: the sync ends with an error naming it, nothing stored, the snapshot stays', async () => {
    env = await makeEnv();
    const exp1 = join(env.dir, 'export1');
    await hqExport(env, exp1);
    const keyring = join(env.dir, 'hq.gpg');
    await cp(join(exp1, 'keyring.gpg'), keyring);
    const siteDir = join(env.dir, 'site');
    expect((await siteSync(env, exp1, keyring)).published).toBe(true);
    const current = await readlink(join(siteDir, 'current'));
    const blobs = await blobCount(siteDir);

    await new Promise((r) => setTimeout(r, 1100));
    env.upstream.addVersion(NOBLE, '20990101');
    await env.upstream.write();
    const exp = join(env.dir, 'export2');
    const report = await hqExport(env, exp);
    // A copy of the disk with a FIFO (no writer) where the index is.
    const fifoIndex = join(env.dir, 'fifo-index');
    await cp(exp, fifoIndex, { recursive: true });
    await rm(join(fifoIndex, 'streams/v1/index.sjson'));
    await run('mkfifo', [join(fifoIndex, 'streams/v1/index.sjson')]);
    // A hung open never returns: the run is killed after a generous budget, inside the test's own.
    const guard = ['timeout', '-s', 'KILL', '40'];
    const c1 = await writeConfig(join(env.dir, 'site1.yaml'), siteDir, { name: 'hq', url: fifoIndex, keyring });
    const r1 = await cli(['sync', '--config', c1, '--json'], {}, guard);
    expect(r1.code).toBe(1);
    expect((JSON.parse(r1.stdout) as SyncReport).failures).toEqual([
      expect.objectContaining({ code: 'MM_SOURCE_FOLDER', message: expect.stringContaining(`${join(fifoIndex, 'streams/v1/index.sjson')}: not a regular file`) }),
    ]);
    expect(await readlink(join(siteDir, 'current'))).toBe(current);
    expect(await blobCount(siteDir)).toBe(blobs);

    const victim = report.files.find((f) => f.path.includes('20990101'))!;
    await rm(join(exp, victim.path));
    await run('mkfifo', [join(exp, victim.path)]);
    const c2 = await writeConfig(join(env.dir, 'site2.yaml'), siteDir, { name: 'hq', url: exp, keyring });
    const r2 = await cli(['sync', '--config', c2, '--json'], {}, guard);
    expect(r2.code).toBe(1);
    expect((JSON.parse(r2.stdout) as SyncReport).failures).toEqual([
      expect.objectContaining({ code: 'MM_SOURCE_FOLDER', message: expect.stringContaining(`${join(exp, victim.path)}: not a regular file`) }),
    ]);
    expect(await new BlobStore(new Layout(siteDir)).has(victim.sha256)).toBe(false);
    expect(await readlink(join(siteDir, 'current'))).toBe(current);
  });
});
