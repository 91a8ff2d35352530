import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { readCurrent, versionsOf } from '../helpers/tree.js';

const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

function newestItem(e: Env, productId: string, item: string) {
  const { doc } = e.upstream.product(productId);
  const versions = doc.products[productId]!.versions;
  const newest = Object.keys(versions).sort().at(-1)!;
  return versions[newest]!.items[item]!;
}

/** Every request for `path` gets this status and an empty body. */
function answerWith(e: Env, path: string, status: number): void {
  e.server.intercept = (_req, res, p) => {
    if (p !== path) return false;
    res.writeHead(status).end();
    return true;
  };
}

/** The first `length` bytes of an item as a partial file, as a crash leaves it; returns the whole file's bytes. */
async function leavePartial(e: Env, item: { path: string; sha256: string }, length: number): Promise<Buffer> {
  const bytes = await readFile(join(e.upstream.dir, item.path));
  await mkdir(join(e.dataDir, 'partial'), { recursive: true });
  await writeFile(join(e.dataDir, 'partial', `${item.sha256}.part`), bytes.subarray(0, length));
  return bytes;
}

/** Serves the first `bytes` of a file, then drops the connection. */
function cutAfter(e: Env, path: string, bytes: number, times = 1): void {
  let left = times;
  e.server.intercept = async (req, res, p) => {
    if (p !== path || left === 0 || req.headers.range) return false;
    left--;
    const body = await readFile(join(e.upstream.dir, p));
    res.writeHead(200, { 'Content-Length': String(body.length) });
    // Let the bytes reach the client before the cut, even on a loaded machine.
    await new Promise<void>((r) => res.write(body.subarray(0, bytes), () => r()));
    await new Promise((r) => setTimeout(r, 300));
    res.socket?.destroy();
    return true;
  };
}

describe('downloads: resume', () => {
  it('resumes a dropped transfer with Range and appends only a matching 206', async () => {
    env = await makeEnv();
    const item = newestItem(env, NOBLE_AMD64, 'squashfs');
    cutAfter(env, item.path, 50_000);
    const r = await env.sync();
    expect(r.failures).toEqual([]);
    const reqs = env.server.requests(item.path);
    expect(reqs.map((q) => q.status)).toEqual([200, 206]);
    // How much of the cut transfer reached the disk depends on the socket; some of it did, and no more than was sent.
    const from = Number(/^bytes=(\d+)-$/.exec(reqs[1]!.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(50_000);
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toEqual(['20250709']);
  });

  it('starts again from zero when the server answers a Range request with 200', async () => {
    env = await makeEnv();
    env.server.ignoreRange = true;
    const item = newestItem(env, NOBLE_AMD64, 'squashfs');
    cutAfter(env, item.path, 50_000);
    const r = await env.sync();
    expect(r.failures).toEqual([]);
    const reqs = env.server.requests(item.path);
    expect(reqs.map((q) => q.status)).toEqual([200, 200]);
    expect(reqs[1]!.range).toMatch(/^bytes=\d+-$/);
  });

  it('resumes a partial file left by a crash', async () => {
    env = await makeEnv();
    const item = newestItem(env, NOBLE_AMD64, 'squashfs');
    await leavePartial(env, item, 70_000);
    const r = await env.sync();
    expect(r.failures).toEqual([]);
    expect(env.server.requests(item.path).map((q) => q.range)).toEqual(['bytes=70000-']);
  });

  it('starts again from zero when the upstream answers the resume with 416', async () => {
    env = await makeEnv();
    const item = newestItem(env, NOBLE_AMD64, 'squashfs');
    const bytes = await leavePartial(env, item, 70_000);
    let refusals = 0;
    env.server.intercept = (req, res, p) => {
      if (p !== item.path || !req.headers.range) return false;
      refusals++;
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end();
      return true;
    };
    const r = await env.sync();
    expect(r.result).toBe('ok');
    expect(refusals).toBe(1);
    expect(await readdir(join(env.dataDir, 'partial'))).toEqual([]);
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toBeDefined();
  });

  it('discards a 206 whose Content-Range does not continue where the partial file stops', async () => {
    env = await makeEnv();
    const item = newestItem(env, NOBLE_AMD64, 'squashfs');
    const bytes = await leavePartial(env, item, 70_000);
    let lied = false;
    env.server.intercept = (req, res, p) => {
      if (p !== item.path || !req.headers.range || lied) return false;
      lied = true;
      res.writeHead(206, { 'Content-Range': `bytes 60000-${bytes.length - 1}/${bytes.length}`, 'Content-Length': String(bytes.length - 60000) });
      res.end(bytes.subarray(60000));
      return true;
    };
    const r = await env.sync();
    expect(r.failures).toEqual([]);
    expect(env.server.requests(item.path).map((q) => q.range)).toEqual(['bytes=70000-', undefined]);
  });
});

describe('downloads: retries', () => {
  it('retries 500s and a connection reset, then succeeds', async () => {
    env = await makeEnv();
    const kernel = newestItem(env, NOBLE_AMD64, 'boot-kernel');
    const initrd = newestItem(env, NOBLE_AMD64, 'boot-initrd');
    let errors = 2;
    let resets = 1;
    env.server.intercept = (_req, res, p) => {
      if (p === kernel.path && errors > 0) {
        errors--;
        res.writeHead(500).end();
        return true;
      }
      if (p === initrd.path && resets > 0) {
        resets--;
        res.socket?.destroy();
        return true;
      }
      return false;
    };
    const r = await env.sync();
    expect(r.failures).toEqual([]);
    expect(env.server.requests(kernel.path).map((q) => q.status)).toEqual([500, 500, 200]);
  });

  it('honours Retry-After on 429', async () => {
    env = await makeEnv();
    const kernel = newestItem(env, NOBLE_AMD64, 'boot-kernel');
    let sent = false;
    let retriedAt = 0;
    let refusedAt = 0;
    env.server.intercept = (_req, res, p) => {
      if (p !== kernel.path) return false;
      if (!sent) {
        sent = true;
        refusedAt = Date.now();
        res.writeHead(429, { 'Retry-After': '1' }).end();
        return true;
      }
      retriedAt = Date.now();
      return false;
    };
    const r = await env.sync();
    expect(r.failures).toEqual([]);
    expect(retriedAt - refusedAt).toBeGreaterThanOrEqual(900);
  });

  it('fails an item on 404 at once, publishes the rest, and exits partial', async () => {
    env = await makeEnv();
    const kernel = newestItem(env, NOBLE_AMD64, 'boot-kernel');
    answerWith(env, kernel.path, 404);
    const r = await env.sync();
    expect(r.result).toBe('partial');
    expect(r.published).toBe(true);
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_UPSTREAM_HTTP', path: kernel.path })]);
    expect(env.server.requests(kernel.path).length).toBe(1);
    const versions = versionsOf(await readCurrent(env.dataDir));
    expect(versions[NOBLE_AMD64]).toBeUndefined();
    expect(versions['com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04']).toEqual(['20250718']);
  });
});

describe('downloads: corrupt content', () => {
  it('rejects an item whose bytes do not match sha256, retries once from zero, never stores or publishes it', async () => {
    env = await makeEnv();
    const squash = newestItem(env, NOBLE_AMD64, 'squashfs');
    env.server.intercept = async (_req, res, p) => {
      if (p !== squash.path) return false;
      const body = await readFile(join(env!.upstream.dir, p));
      body[1000] = body[1000]! ^ 0x40;
      res.writeHead(200, { 'Content-Length': String(body.length) }).end(body);
      return true;
    };
    const r = await env.sync();
    expect(r.result).toBe('partial');
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_CHECKSUM_MISMATCH', path: squash.path })]);
    expect(env.server.requests(squash.path).length).toBe(2);
    const shard = await readdir(join(env.dataDir, 'blobs/sha256', squash.sha256.slice(0, 2))).catch(() => []);
    expect(shard).not.toContain(squash.sha256);
    expect(await readdir(join(env.dataDir, 'partial'))).toEqual([]);
    const tree = await readCurrent(env.dataDir);
    expect(versionsOf(tree)[NOBLE_AMD64]).toBeUndefined();
    expect(tree.files).not.toContain(squash.path);
  });

  it('keeps the previous snapshot\'s version of a product it could not refresh', async () => {
    env = await makeEnv();
    await env.sync();
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    const squash = newestItem(env, NOBLE_AMD64, 'squashfs');
    answerWith(env, squash.path, 503);
    const r = await env.sync();
    expect(r.result).toBe('partial');
    expect(r.published).toBe(false);
    const versions = versionsOf(await readCurrent(env.dataDir));
    expect(versions[NOBLE_AMD64]).toEqual(['20250709']);
    // Once upstream recovers, the next sync completes the new version.
    env.server.intercept = undefined;
    const again = await env.sync();
    expect(again.result).toBe('ok');
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toEqual(['20250801']);
  });

  it('keeps the verified files of a version it could not finish, even when gc runs after another publish', async () => {
    env = await makeEnv();
    const config = env.config([{}], { publish: { keepSnapshots: 1 } });
    await env.sync({ config });
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    env.upstream.addVersion('com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04', '20250801');
    await env.upstream.write();
    const squash = newestItem(env, NOBLE_AMD64, 'squashfs');
    const kernel = newestItem(env, NOBLE_AMD64, 'boot-kernel');
    answerWith(env, squash.path, 503);
    const r = await env.sync({ config });
    expect(r.result).toBe('partial');
    // jammy's new version was published and the old snapshot pruned, so gc walked the store.
    expect(r.published).toBe(true);
    expect(r.gc!.snapshotsRemoved).toHaveLength(1);
    const blob = (sha: string) => join(env!.dataDir, 'blobs', 'sha256', sha.slice(0, 2), sha);
    await expect(readFile(blob(kernel.sha256))).resolves.toBeDefined();
    env.server.intercept = undefined;
    const again = await env.sync({ config });
    expect(again.result).toBe('ok');
    expect(again.downloaded.files).toBe(1);
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toEqual(['20250801']);
  });
});

describe('downloads: a complete partial file (killed before its rename)', () => {
  it('is adopted without a request when it hashes right, and fetched again when it does not', async () => {
    env = await makeEnv();
    const squash = newestItem(env, NOBLE_AMD64, 'squashfs');
    const kernel = newestItem(env, NOBLE_AMD64, 'boot-kernel');
    await mkdir(join(env.dataDir, 'partial'), { recursive: true });
    await writeFile(join(env.dataDir, 'partial', `${squash.sha256}.part`), await readFile(join(env.upstream.dir, squash.path)));
    const wrong = await readFile(join(env.upstream.dir, kernel.path));
    wrong[0] = wrong[0]! ^ 1;
    await writeFile(join(env.dataDir, 'partial', `${kernel.sha256}.part`), wrong);
    const r = await env.sync();
    expect(r.failures).toEqual([]);
    expect(env.server.requests(squash.path)).toEqual([]);
    expect(env.server.requests(kernel.path).map((q) => [q.status, q.range])).toEqual([[200, undefined]]);
  });
});
