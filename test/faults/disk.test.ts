import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { SyncProgress } from '../../src/mirror/progress.js';
import type { SyncReport } from '../../src/mirror/sync.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { blobNames, checkCurrent, cli, Gpgv, run, selectedFiles, storeProblems, versionsIn, walkFiles, writeJsonConfig } from './helpers.js';

/**
 * A full disk: the dataDir is a 3 MiB tmpfs. A sync that cannot fit stops
 * before downloading (MM_DISK_SPACE); one that runs out of space anyway
 * says so (MM_DISK_FULL, and what to do), leaves no partial blob and no
 * half-written file of the failed items, and the snapshot from before keeps
 * serving; once there is room again, the next sync completes. Needs root
 * for mount(8), as CI has: it fails, loudly, without.
 */

const KiB = 1024;
const SIZES: Record<string, number> = { squashfs: 1024 * KiB, 'boot-initrd': 256 * KiB, 'boot-kernel': 128 * KiB, manifest: 2 * KiB };
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const V3 = 'com.ubuntu.maas:stable:v3:download';
const DISK_FULL_MESSAGE = /^no space left on the device holding .+; free space \(maas-mirror gc, fewer keepSnapshots or maxVersions\) and sync again$/;

let env: Env;
let mnt: string | undefined;
let gpgv: Gpgv | undefined;

function configDoc(filters: string[][] | undefined): Record<string, unknown> {
  return {
    dataDir: mnt,
    sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring, ...(filters ? { filters } : {}) }],
    download: { concurrency: 4, retries: 2, connectTimeout: '2s', idleTimeout: '5s' },
    tftp: { enabled: false },
  };
}

async function mount(size: string, remount = false): Promise<void> {
  const args = remount ? ['-o', `remount,size=${size}`, mnt!] : ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', mnt!];
  const r = await run('mount', args);
  if (r.code !== 0) throw new Error(`mount ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
}

/** Writes a file until the device refuses another byte. */
function fillDisk(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (const size of [1 << 20, 64 * KiB, 4 * KiB, 512, 1]) {
      const chunk = Buffer.alloc(size, 0xaa);
      for (;;) {
        try {
          writeSync(fd, chunk);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) {
    throw new Error('test/faults/disk.test.ts must run as root: it mounts a small tmpfs as the dataDir (CI runs it as root)');
  }
  env = await makeEnv({ samples: ['stable-v3-download.json'], sizeOf: (ftype) => SIZES[ftype] ?? 16 * KiB });
  mnt = await mkdtemp(join(tmpdir(), 'mm-tmpfs-'));
  await mount('3m');
});

afterAll(async () => {
  await gpgv?.close();
  if (mnt) {
    await run('umount', [mnt]).catch(() => undefined);
    await rm(mnt, { recursive: true, force: true });
  }
  await env?.close();
});

describe('a full disk', () => {
  it('stops a sync that cannot fit before downloading anything (MM_DISK_SPACE); dry-run shows the figures, partial files count', async () => {
    // A small selection that fits.
    const narrow = await env.sync({ config: env.config([{ filters: [['release=noble', 'arch=amd64']] }], { dataDir: mnt }) });
    expect(narrow.failures).toEqual([]);
    gpgv ??= await Gpgv.create(join(mnt!, 'keys', 'public.gpg'));
    const before = (await checkCurrent(mnt!, gpgv))!;
    expect(Object.keys(versionsIn(before.products.values()))).toEqual([NOBLE]);
    const blobsBefore = await blobNames(mnt!);

    // Widened: four times as much, more than the device holds. As an operator runs it.
    const file = await writeJsonConfig(join(env.dir, 'disk.yaml'), configDoc(undefined));
    const dry = await cli(['sync', '--dry-run', '--config', file]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^free space on dataDir: [\d.]+ [KM]iB; needed: [\d.]+ MiB \([\d.]+ MiB to fetch, [\d.]+ MiB kept free for metadata\): DOES NOT FIT, a sync would stop before downloading$/m);
    const dryJson = JSON.parse((await cli(['sync', '--dry-run', '--json', '--config', file])).stdout) as SyncReport;
    const free = (await statfs(mnt!)).bavail * (await statfs(mnt!)).bsize;
    expect(dryJson.space).toMatchObject({ fits: false, available: free, toFetch: dryJson.plan.bytesToFetch, resumable: 0 });
    expect(dryJson.space!.needed).toBeGreaterThan(free);

    const requests = env.server.log.length;
    const failed = await cli(['sync', '--config', file, '--json']);
    expect(failed.code, failed.stderr).toBe(1);
    const out = JSON.parse(failed.stdout) as SyncReport;
    expect(out.result).toBe('failed');
    expect(out.published).toBe(false);
    expect(out.downloaded).toEqual({ files: 0, bytes: 0 });
    expect(out.failures).toHaveLength(1);
    expect(out.failures[0]!.code).toBe('MM_DISK_SPACE');
    // The source was read and its signatures held: the refusal is the sync's, not the source's.
    expect(out.sources.map((s) => [s.name, s.result])).toEqual([['stable', 'ok']]);
    expect(out.failures[0]!.message).toMatch(
      /^not enough free space on the device holding .+: this sync needs [\d.]+ MiB \([\d.]+ MiB to fetch, plus [\d.]+ MiB kept free for metadata\), [\d.]+ [KM]iB is free; nothing was downloaded/,
    );
    expect(failed.stderr).toContain('"code":"MM_DISK_SPACE"');
    // Not one item was asked of upstream; nothing was written; the old snapshot is current.
    expect(env.server.log.slice(requests).filter((r) => !r.path.startsWith('streams/'))).toEqual([]);
    expect(await blobNames(mnt!)).toEqual(blobsBefore);
    expect(await readdir(join(mnt!, 'partial')).catch(() => [])).toEqual([]);
    expect((await checkCurrent(mnt!, gpgv))!.id).toBe(before.id);

    // A partial file already there is counted as written.
    const wanted = [...selectedFiles(env.upstream)].filter(([, f]) => !blobsBefore.has(f.sha256)).sort(([, a], [, b]) => b.size - a.size)[0]!;
    await mkdir(join(mnt!, 'partial'), { recursive: true });
    const part = join(mnt!, 'partial', `${wanted[1].sha256}.part`);
    onTestFinished(() => unlink(part).catch(() => undefined));
    await writeFile(part, (await readFile(join(env.upstream.dir, wanted[0]))).subarray(0, 300 * KiB));
    const resumable = JSON.parse((await cli(['sync', '--dry-run', '--json', '--config', file])).stdout) as SyncReport;
    expect(resumable.space!.resumable).toBe(300 * KiB);
    expect(resumable.space!.needed).toBe(dryJson.space!.needed - 300 * KiB);
  });

  it('fails a sync that runs out of space while downloading with MM_DISK_FULL, keeps the old snapshot, completes once there is room', async () => {
    // Room for the plan, taken by something else the moment downloads start.
    await mount('16m', true);
    const config = env.config([{}], { dataDir: mnt });
    const before = (await checkCurrent(mnt!, gpgv!))!;
    const filler = join(mnt!, 'filler');
    const progress = new SyncProgress();
    let filled = false;
    progress.on('change', () => {
      if (progress.phase === 'download' && !filled) {
        filled = true;
        fillDisk(filler);
      }
    });
    const failed = await env.sync({ config, progress });
    expect(filled).toBe(true);
    expect(failed.result).toBe('partial');
    expect(failed.failures.length).toBeGreaterThan(0);
    for (const f of failed.failures) {
      expect(f.code, JSON.stringify(f)).toBe('MM_DISK_FULL');
      expect(f.message).toMatch(DISK_FULL_MESSAGE);
    }

    // No partial blob: every stored file is whole; the failed items left no partial file.
    expect((await storeProblems(mnt!)).problems).toEqual([]);
    expect(await readdir(join(mnt!, 'partial'))).toEqual([]);
    expect((await walkFiles(mnt!)).filter((f) => /\.tmp-|\.building-/.test(f))).toEqual([]);
    // The old snapshot keeps serving.
    const during = (await checkCurrent(mnt!, gpgv!))!;
    expect(versionsIn(during.products.values())[NOBLE]).toEqual(versionsIn(before.products.values())[NOBLE]);

    // Room again: the next sync completes.
    await unlink(filler);
    const file = await writeJsonConfig(join(env.dir, 'disk.yaml'), configDoc(undefined));
    const again = await cli(['sync', '--config', file, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const after = (await checkCurrent(mnt!, gpgv!))!;
    expect(Object.keys(versionsIn(after.products.values())).length).toBe(Object.keys(env.upstream.products.get(V3)!.products).length);
    expect((await storeProblems(mnt!)).problems).toEqual([]);
    expect(await readdir(join(mnt!, 'partial'))).toEqual([]);
  });

  it('fails a sync that runs out of space while publishing with MM_DISK_FULL, keeps the old snapshot and its downloads', async () => {
    // Whatever the test before left: room, and everything mirrored.
    await mount('64m', true);
    const config = env.config([{}], { dataDir: mnt });
    expect((await env.sync({ config })).failures).toEqual([]);
    gpgv ??= await Gpgv.create(join(mnt!, 'keys', 'public.gpg'));
    const before = (await checkCurrent(mnt!, gpgv))!;
    env.upstream.addVersion(NOBLE, '20260101');
    await env.upstream.write();
    const fresh = Object.values(env.upstream.product(NOBLE).doc.products[NOBLE]!.versions['20260101']!.items);

    // The downloads fit; the moment publishing starts, the device is full.
    const filler = join(mnt!, 'filler');
    const progress = new SyncProgress();
    let filled = false;
    progress.on('change', () => {
      if (progress.phase === 'publish' && !filled) {
        filled = true;
        fillDisk(filler);
      }
    });
    let report: SyncReport | undefined;
    let error: { code?: string; message?: string } | undefined;
    try {
      report = await env.sync({ config, progress });
    } catch (err) {
      error = err as typeof error;
    }
    expect(filled).toBe(true);
    const codes = report ? report.failures.map((f) => f.code) : [error?.code];
    expect(codes).toContain('MM_DISK_FULL');
    const message = report ? report.failures.find((f) => f.code === 'MM_DISK_FULL')!.message : error!.message!;
    expect(message).toMatch(DISK_FULL_MESSAGE);

    // Nothing half-published, nothing of it reachable, no temporary file left; the old tree is whole.
    expect((await readdir(join(mnt!, 'snapshots'))).filter((n) => n.startsWith('.'))).toEqual([]);
    expect((await walkFiles(mnt!)).filter((f) => /\.tmp-|\.building-/.test(f))).toEqual([]);
    const during = (await checkCurrent(mnt!, gpgv))!;
    expect(during.id).toBe(before.id);
    const store = await storeProblems(mnt!);
    expect(store.problems).toEqual([]);
    // What was downloaded is kept for the next run.
    for (const f of fresh) expect(store.blobs.has(f.sha256), f.path).toBe(true);

    await unlink(filler);
    const requestsBefore = env.server.log.length;
    const again = await env.sync({ config });
    expect(again.failures).toEqual([]);
    expect(again.published).toBe(true);
    expect(env.server.log.slice(requestsBefore).filter((r) => !r.path.startsWith('streams/'))).toEqual([]);
    const after = (await checkCurrent(mnt!, gpgv))!;
    expect(versionsIn(after.products.values())[NOBLE]).toEqual(['20260101']);
  });
});
