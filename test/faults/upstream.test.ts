import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/load.js';
import { UpstreamClient } from '../../src/mirror/client.js';
import { downloadBlob } from '../../src/mirror/download.js';
import { HashPool } from '../../src/mirror/hash-pool.js';
import { MAX_METADATA_BYTES } from '../../src/mirror/metadata.js';
import { BlobStore } from '../../src/store/blobs.js';
import { Layout } from '../../src/store/layout.js';
import type { SyncReport } from '../../src/mirror/sync.js';
import { clearsign } from '../../src/pgp/sign.js';
import type { ProductsDocument } from '../../src/simplestreams/types.js';
import {
  answer,
  cutBody,
  replaceBody,
  stallBody,
  startProxy,
  streamSpaces,
  type FaultContext,
  type FaultProxy,
} from '../helpers/fault-proxy.js';
import { makeEnv, makeKey, type Env } from '../helpers/env.js';
import { checkCurrent, Gpgv, sha256 as sha256Hex, storeProblems, walkFiles, type TreeCheck } from './helpers.js';

/**
 * A hostile or broken upstream, through a real proxy between the mirror and
 * the fixture: every fault is detected, retried or refused with a clear
 * code and message, nothing wrong enters the store or the tree, and the
 * snapshot published before keeps serving.
 */

const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const V3 = 'com.ubuntu.maas:stable:v3:download';
const V3_SJSON = `streams/v1/${V3}.sjson`;
const INDEX = 'streams/v1/index.sjson';
const NEW_VERSION = '20260101';

interface World {
  env: Env;
  proxy: FaultProxy;
  gpgv: Gpgv;
  before: TreeCheck;
  /** Files under the test directory outside dataDir and the upstream, before the fault. */
  outside: string[];
  config(download?: Record<string, unknown>): Config;
  sync(download?: Record<string, unknown>, allowDowngrade?: boolean): Promise<SyncReport>;
}

let w: World | undefined;
afterEach(async () => {
  if (!w) return;
  w.proxy.fault = undefined;
  await w.gpgv.close();
  await w.proxy.stop();
  await w.env.close();
  w = undefined;
});

async function outsideFiles(env: Env): Promise<string[]> {
  return (await walkFiles(env.dir))
    .map((f) => relative(env.dir, f))
    .filter((f) => !f.startsWith('data/') && !f.startsWith('upstream/'))
    .sort();
}

/** A fresh upstream behind the proxy, mirrored once cleanly; the fault comes after. */
async function world(date?: Date): Promise<World> {
  const env = await makeEnv({ samples: ['stable-v3-download.json'], ...(date ? { date } : {}) });
  const proxy = await startProxy(env.server.url);
  const config = (download: Record<string, unknown> = {}) =>
    env.config([{ url: proxy.url }], {
      download: { concurrency: 4, retries: 3, connectTimeout: '2s', idleTimeout: '2s', ...download },
    });
  const first = await env.sync({ config: config() });
  expect(first.failures).toEqual([]);
  const gpgv = await Gpgv.create(join(env.dataDir, 'keys', 'public.gpg'));
  const before = (await checkCurrent(env.dataDir, gpgv))!;
  w = {
    env,
    proxy,
    gpgv,
    before,
    outside: await outsideFiles(env),
    config,
    sync: (download, allowDowngrade) => env.sync({ config: config(download), allowDowngrade }),
  };
  return w;
}

/** Upstream publishes a new version of NOBLE, so the next sync must download through the fault. */
async function newVersion(x: World): Promise<Record<string, { path: string; sha256: string; size: number }>> {
  x.env.upstream.addVersion(NOBLE, NEW_VERSION);
  await x.env.upstream.write();
  return x.env.upstream.product(NOBLE).doc.products[NOBLE]!.versions[NEW_VERSION]!.items as Record<
    string,
    { path: string; sha256: string; size: number }
  >;
}

/**
 * After the fault: the store holds only sound blobs, the tree verifies with
 * gpgv and every item in it is upstream's genuine file, no partial file of a
 * refused download is left, nothing appeared outside dataDir, and `current`
 * is the snapshot from before (same) or a correct new one.
 */
async function assertSound(x: World, expectSame: boolean): Promise<TreeCheck> {
  expect((await storeProblems(x.env.dataDir)).problems).toEqual([]);
  const tree = (await checkCurrent(x.env.dataDir, x.gpgv))!;
  expect(tree).toBeDefined();
  const genuine = x.env.upstream.files();
  for (const [path, sha] of tree.items) expect(sha, path).toBe(genuine.get(path)?.sha256);
  if (expectSame) expect(tree.id).toBe(x.before.id);
  expect(await outsideFiles(x.env)).toEqual(x.outside);
  return tree;
}

const versionsOf = (t: TreeCheck) => Object.keys(t.products.get(V3)!.products[NOBLE]!.versions);

/** Calls `fault` for requests of `path` while `times` lasts (Infinity: always); others pass. */
function on(x: World, path: string, times: number, fault: (ctx: FaultContext, n: number) => Promise<string> | string): void {
  let n = 0;
  x.proxy.log.length = 0; // from here on, the log holds only what the faulty sync asked for
  x.proxy.fault = (ctx) => {
    if (ctx.path !== path || n >= times) return undefined;
    return fault(ctx, n++);
  };
}

describe('upstream faults on item downloads', () => {
  it('a connection reset mid-body is resumed with Range', async () => {
    const x = await world();
    const items = await newVersion(x);
    const squash = items.squashfs!;
    on(x, squash.path, 1, async (ctx) => (await cutBody(ctx, 50_000, 'reset'), 'reset'));
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    const reqs = x.proxy.requests(squash.path);
    expect(reqs.map((q) => q.fault)).toEqual(['reset', undefined]);
    expect(reqs[1]!.status).toBe(206);
    const from = Number(/^bytes=(\d+)-$/.exec(reqs[1]!.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(50_000);
    // Only the rest was sent again.
    expect(reqs[1]!.bytes).toBe(squash.size - from);
    const tree = await assertSound(x, false);
    expect(versionsOf(tree)).toEqual([NEW_VERSION]);
  });

  it('a connection reset while reading the index is retried', async () => {
    const x = await world();
    await newVersion(x);
    on(x, INDEX, 1, async (ctx) => (await cutBody(ctx, 300, 'reset'), 'reset'));
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    expect(x.proxy.requests(INDEX).length).toBe(2);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it('a burst of 500/503 within the retry budget is retried to success', async () => {
    const x = await world();
    const kernel = (await newVersion(x))['boot-kernel']!;
    const burst = [500, 503, 500];
    on(x, kernel.path, burst.length, (ctx, n) => (answer(ctx, burst[n]!), String(burst[n])));
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    expect(x.proxy.requests(kernel.path).map((q) => q.status)).toEqual([500, 503, 500, 200]);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it('503 beyond the retry budget fails the item with MM_UPSTREAM_HTTP and keeps the old version serving', async () => {
    const x = await world();
    const kernel = (await newVersion(x))['boot-kernel']!;
    on(x, kernel.path, Infinity, (ctx) => (answer(ctx, 503), '503'));
    const r = await x.sync();
    expect(r.result).toBe('partial');
    expect(r.published).toBe(false);
    expect(r.failures).toEqual([
      expect.objectContaining({ code: 'MM_UPSTREAM_HTTP', path: kernel.path, message: expect.stringMatching(/answered HTTP 503$/) }),
    ]);
    expect(x.proxy.requests(kernel.path).length).toBe(4); // 1 + retries
    const tree = await assertSound(x, true);
    expect(versionsOf(tree)).toEqual(versionsOf(x.before));
  });

  it('429 with Retry-After is honoured', async () => {
    const x = await world();
    const kernel = (await newVersion(x))['boot-kernel']!;
    const at: number[] = [];
    x.proxy.fault = (ctx) => {
      if (ctx.path !== kernel.path) return undefined;
      at.push(Date.now());
      if (at.length > 1) return undefined;
      answer(ctx, 429, { 'retry-after': '1' });
      return '429';
    };
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    expect(at.length).toBe(2);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(950);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it('a body that stalls is cut by the idle timeout and resumed', async () => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, 1, async (ctx) => (await stallBody(ctx, 40_000), 'stall'));
    const t0 = Date.now();
    const r = await x.sync({ idleTimeout: '1s' });
    expect(r.failures).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    const reqs = x.proxy.requests(squash.path);
    expect(reqs.map((q) => q.fault)).toEqual(['stall', undefined]);
    expect(reqs[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it('a body that always stalls fails with an idle-timeout message, and nothing partial is published', async () => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, Infinity, async (ctx) => (await stallBody(ctx, 40_000), 'stall'));
    const r = await x.sync({ idleTimeout: '1s', retries: 1 });
    expect(r.result).toBe('partial');
    expect(r.failures).toEqual([
      expect.objectContaining({ code: 'MM_UPSTREAM_NETWORK', path: squash.path, message: expect.stringMatching(/stopped sending \(idle timeout\)/) }),
    ]);
    expect(versionsOf(await assertSound(x, true))).toEqual(versionsOf(x.before));
  });

  it('a body shorter than its Content-Length (connection closed early) is resumed', async () => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, 1, async (ctx) => (await cutBody(ctx, 70_000, 'close'), 'short'));
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    const reqs = x.proxy.requests(squash.path);
    expect(reqs.map((q) => q.fault)).toEqual(['short', undefined]);
    expect(reqs[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it('a consistently short file (Content-Length agrees, size does not) is refused with MM_SIZE_MISMATCH', async () => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, Infinity, async (ctx) => {
      const up = await ctx.fetch({ range: undefined });
      const body = up.body.subarray(0, up.body.length - 1000);
      ctx.res.writeHead(200, { 'content-length': String(body.length) });
      await ctx.write(body);
      ctx.res.end();
      return 'short';
    });
    const r = await x.sync();
    expect(r.failures).toEqual([
      expect.objectContaining({
        code: 'MM_SIZE_MISMATCH',
        path: squash.path,
        message: expect.stringContaining(`got ${squash.size - 1000} bytes, expected ${squash.size}; the download was discarded`),
      }),
    ]);
    expect(x.proxy.requests(squash.path).length).toBe(2); // once more from zero, then refused
    expect(await readdir(join(x.env.dataDir, 'partial'))).toEqual([]);
    expect(versionsOf(await assertSound(x, true))).toEqual(versionsOf(x.before));
  });

  it('a body longer than the listed size is cut off and refused', async () => {
    const x = await world();
    const kernel = (await newVersion(x))['boot-kernel']!;
    on(x, kernel.path, Infinity, async (ctx) => {
      const up = await ctx.fetch({ range: undefined });
      const body = Buffer.concat([up.body, randomBytes(4096)]);
      ctx.res.writeHead(200, { 'content-length': String(body.length) });
      await ctx.write(body);
      ctx.res.end();
      return 'long';
    });
    const r = await x.sync();
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_SIZE_MISMATCH', path: kernel.path })]);
    expect(await readdir(join(x.env.dataDir, 'partial'))).toEqual([]);
    await assertSound(x, true);
  });

  it('a body refused mid-stream never leaves its partial file behind (500 tries)', async () => {
    // The refusal can come before the write stream has opened partial/<sha>.part:
    // an unlink issued then runs first, and the open creates the file after it.
    const body = randomBytes(64 * 1024);
    const declared = { sha256: sha256Hex(body.subarray(0, 1000)), size: 1000 };
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(body.length) });
      res.end(body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
    const dataDir = await mkdtemp(join(tmpdir(), 'mm-leftover-'));
    const layout = new Layout(dataDir);
    const client = new UpstreamClient({ connectTimeout: 2000, idleTimeout: 2000, connections: 8 });
    const hashes = new HashPool();
    try {
      const codes = new Map<string, number>();
      for (let round = 0; round < 25; round++) {
        await Promise.all(
          Array.from({ length: 20 }, async (_, i) => {
            const sha = sha256Hex(`${round}-${i}`);
            const err = await downloadBlob({ url, sha256: sha, size: declared.size }, { client, layout, store: new BlobStore(layout), hashes, retries: 0 }).then(
              () => undefined,
              (e: { code?: string }) => e,
            );
            codes.set(String(err?.code), (codes.get(String(err?.code)) ?? 0) + 1);
          }),
        );
      }
      expect([...codes]).toEqual([['MM_SIZE_MISMATCH', 500]]);
      await new Promise((r) => setTimeout(r, 100));
      expect(await readdir(layout.partialDir)).toEqual([]);
    } finally {
      await hashes.close();
      await client.close();
      server.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('flipped bits are detected by sha256: retried once from zero, then refused; never stored', async () => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, Infinity, async (ctx) => {
      const up = await ctx.fetch({ range: undefined });
      up.body[12_345] = up.body[12_345]! ^ 0x10;
      ctx.res.writeHead(200, { 'content-length': String(up.body.length) });
      await ctx.write(up.body);
      ctx.res.end();
      return 'flip';
    });
    const r = await x.sync();
    expect(r.failures).toEqual([
      expect.objectContaining({ code: 'MM_CHECKSUM_MISMATCH', path: squash.path, message: expect.stringContaining(`expected ${squash.sha256}; the download was discarded`) }),
    ]);
    expect(x.proxy.requests(squash.path).length).toBe(2);
    const { blobs } = await storeProblems(x.env.dataDir);
    expect(blobs.has(squash.sha256)).toBe(false);
    expect(await readdir(join(x.env.dataDir, 'partial'))).toEqual([]);
    expect(versionsOf(await assertSound(x, true))).toEqual(versionsOf(x.before));
  });

  it('a one-off flipped bit is recovered by the retry from zero', async () => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, 1, async (ctx) => {
      const up = await ctx.fetch({ range: undefined });
      up.body[100] = up.body[100]! ^ 0x01;
      ctx.res.writeHead(200, { 'content-length': String(up.body.length) });
      await ctx.write(up.body);
      ctx.res.end();
      return 'flip';
    });
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    expect(x.proxy.requests(squash.path).map((q) => [q.fault, q.range])).toEqual([
      ['flip', undefined],
      [undefined, undefined],
    ]);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it.each([
    ['starts elsewhere', (size: number, _from: number) => `bytes 0-${size - 1}/${size}`],
    ['has the wrong total', (size: number, from: number) => `bytes ${from}-${size - 1}/${size + 7}`],
    ['is missing', () => undefined],
  ])('a 206 whose Content-Range %s is discarded and the file fetched from zero', async (_name, contentRange) => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, 2, async (ctx, n) => {
      if (n === 0) {
        await cutBody(ctx, 60_000, 'reset');
        return 'reset';
      }
      const from = Number(/^bytes=(\d+)-$/.exec(ctx.req.headers.range ?? '')?.[1] ?? 0);
      const up = await ctx.fetch({ range: undefined });
      const cr = contentRange(up.body.length, from);
      const body = up.body.subarray(from);
      ctx.res.writeHead(206, { 'content-length': String(body.length), ...(cr ? { 'content-range': cr } : {}) });
      await ctx.write(body);
      ctx.res.end();
      return 'bad-range';
    });
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    const reqs = x.proxy.requests(squash.path);
    expect(reqs.map((q) => q.fault)).toEqual(['reset', 'bad-range', undefined]);
    expect(reqs[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(reqs[2]!.range).toBeUndefined();
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it('a 200 to a Range request starts the file again instead of appending', async () => {
    const x = await world();
    const squash = (await newVersion(x)).squashfs!;
    on(x, squash.path, 2, async (ctx, n) => {
      if (n === 0) {
        await cutBody(ctx, 60_000, 'reset');
        return 'reset';
      }
      const up = await ctx.fetch({ range: undefined });
      ctx.res.writeHead(200, { 'content-length': String(up.body.length) });
      await ctx.write(up.body);
      ctx.res.end();
      return 'ignored-range';
    });
    const r = await x.sync();
    expect(r.failures).toEqual([]);
    const reqs = x.proxy.requests(squash.path);
    expect(reqs.map((q) => [q.fault, q.status])).toEqual([
      ['reset', 200],
      ['ignored-range', 200],
    ]);
    expect(reqs[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });
});

describe('upstream faults on metadata', () => {
  it('an index signed by another key rejects the source, naming the key and the keyring', async () => {
    const x = await world();
    await newVersion(x);
    const other = await makeKey(x.env.dir, 'intruder');
    const text = JSON.stringify(x.env.upstream.index, null, 1) + '\n';
    const forged = await clearsign(text, other.privateKey);
    x.outside = await outsideFiles(x.env);
    on(x, INDEX, Infinity, async (ctx) => (await replaceBody(ctx, forged), 'forged'));
    const r = await x.sync();
    expect(r.result).toBe('failed');
    expect(r.published).toBe(false);
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_SIGNATURE_INVALID' })]);
    expect(r.failures[0]!.message).toContain(other.privateKey.getKeyID().toHex().toUpperCase());
    expect(r.failures[0]!.message).toContain(x.env.key.keyring);
    // Not a byte of an item was fetched on the word of that index.
    expect(x.proxy.log.filter((q) => !q.path.startsWith('streams/') && q.path.includes(NEW_VERSION))).toEqual([]);
    await assertSound(x, true);
    // And it does not wedge the mirror: with the fault gone, the next sync goes through.
    x.proxy.fault = undefined;
    expect((await x.sync()).failures).toEqual([]);
    expect(versionsOf(await assertSound(x, false))).toEqual([NEW_VERSION]);
  });

  it('a products file signed by another key is refused', async () => {
    const x = await world();
    await newVersion(x);
    const other = await makeKey(x.env.dir, 'intruder');
    const doc = x.env.upstream.products.get(V3)!;
    const forged = await clearsign(JSON.stringify(doc, null, 1) + '\n', other.privateKey);
    x.outside = await outsideFiles(x.env);
    on(x, V3_SJSON, Infinity, async (ctx) => (await replaceBody(ctx, forged), 'forged'));
    const r = await x.sync();
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_SIGNATURE_INVALID' })]);
    expect(r.published).toBe(false);
    await assertSound(x, true);
  });

  it('an older, validly signed index replayed is refused as a downgrade', async () => {
    const x = await world(new Date('2025-07-24T09:00:00Z'));
    const oldIndex = await readFile(join(x.env.upstream.dir, INDEX));
    const oldProducts = await readFile(join(x.env.upstream.dir, V3_SJSON));
    // Upstream moves on; the mirror follows.
    x.env.upstream.addVersion(NOBLE, NEW_VERSION);
    await x.env.upstream.write(new Date('2025-08-01T09:00:00Z'));
    expect((await x.sync()).failures).toEqual([]);
    const moved = (await checkCurrent(x.env.dataDir, x.gpgv))!;
    expect(versionsOf(moved)).toEqual([NEW_VERSION]);
    x.before = moved;
    // A replay of last month's signed index.
    on(x, INDEX, Infinity, async (ctx) => (await replaceBody(ctx, oldIndex), 'replay'));
    const r = await x.sync();
    expect(r.result).toBe('failed');
    expect(r.failures).toEqual([
      expect.objectContaining({ code: 'MM_DOWNGRADE_REFUSED', message: expect.stringMatching(/older than .* already accepted: this looks like a replayed old signed file.*--allow-downgrade/) }),
    ]);
    expect(versionsOf(await assertSound(x, true))).toEqual([NEW_VERSION]);
    // A replay of the products file alone, under the current index, too.
    on(x, V3_SJSON, Infinity, async (ctx) => (await replaceBody(ctx, oldProducts), 'replay'));
    const r2 = await x.sync();
    expect(r2.failures).toEqual([expect.objectContaining({ code: 'MM_DOWNGRADE_REFUSED' })]);
    expect(versionsOf(await assertSound(x, true))).toEqual([NEW_VERSION]);
  });

  it.each([
    ['a relative path with ..', (name: string) => `../../../../../../..${tmpdir()}/${name}`],
    ['an absolute path', (name: string) => `${tmpdir()}/${name}`],
    ['a path with an embedded ..', (name: string) => `noble/amd64/../../../../${name}`],
  ])('a products file listing %s is refused; nothing is written outside the tree', async (_name, unsafe) => {
    const x = await world();
    const items = await newVersion(x);
    const name = `mm-escape-${randomBytes(6).toString('hex')}`;
    const doc = structuredClone(x.env.upstream.products.get(V3)!) as ProductsDocument;
    const item = doc.products[NOBLE]!.versions[NEW_VERSION]!.items['boot-kernel']!;
    item.path = unsafe(name);
    // Validly signed by the upstream's own key: only the path check stands in the way.
    const signed = await clearsign(JSON.stringify(doc, null, 1) + '\n', x.env.key.privateKey);
    on(x, V3_SJSON, Infinity, async (ctx) => (await replaceBody(ctx, signed), 'unsafe'));
    const r = await x.sync();
    expect(r.failures).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/^refusing unsafe path .*: paths must be relative and stay inside the tree$/) }),
    ]);
    expect(r.failures[0]!.code).toMatch(/^MM_(UNSAFE_PATH|METADATA_INVALID)$/);
    await expect(stat(join(tmpdir(), name))).rejects.toThrow();
    // No request went out for it either.
    expect(x.proxy.log.filter((q) => q.path.includes(name))).toEqual([]);
    const tree = await assertSound(x, false);
    // The version that lists it is not published without its kernel: MAAS would take it as whole.
    expect(versionsOf(tree)).toEqual(versionsOf(x.before));
    expect(tree.items.has(items['boot-kernel']!.path)).toBe(false);
  });

  it('an index entry pointing outside the tree rejects the source with MM_UNSAFE_PATH', async () => {
    const x = await world();
    await newVersion(x);
    const index = structuredClone(x.env.upstream.index);
    index.index[V3]!.path = '../../../etc/passwd.sjson';
    const signed = await clearsign(JSON.stringify(index, null, 1) + '\n', x.env.key.privateKey);
    on(x, INDEX, Infinity, async (ctx) => (await replaceBody(ctx, signed), 'unsafe'));
    const r = await x.sync();
    expect(r.result).toBe('failed');
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_UNSAFE_PATH', message: expect.stringContaining('../../../etc/passwd.sjson') })]);
    expect(x.proxy.log.filter((q) => q.path.includes('passwd'))).toEqual([]);
    await assertSound(x, true);
  });

  it.each([
    [INDEX, 'the index'],
    [V3_SJSON, 'a products file'],
  ])('malformed JSON in %s (validly signed) is refused with MM_METADATA_INVALID', async (path) => {
    const x = await world();
    await newVersion(x);
    const good = await readFile(join(x.env.upstream.dir, path.replace(/\.sjson$/, '.json')), 'utf8');
    const broken = await clearsign(good.slice(0, Math.floor(good.length / 2)) + '\n', x.env.key.privateKey);
    on(x, path, Infinity, async (ctx) => (await replaceBody(ctx, broken), 'malformed'));
    const r = await x.sync();
    expect(r.result).toBe('failed');
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_METADATA_INVALID', message: expect.stringMatching(/is not valid JSON/) })]);
    await assertSound(x, true);
  });

  it('a metadata file of 70 MB (no Content-Length) is cut at the cap and refused with MM_METADATA_TOO_LARGE', async () => {
    const x = await world();
    await newVersion(x);
    on(x, INDEX, Infinity, async (ctx) => (await streamSpaces(ctx, 70_000_000, false), 'huge'));
    const r = await x.sync();
    expect(r.result).toBe('failed');
    expect(r.failures).toEqual([
      expect.objectContaining({ code: 'MM_METADATA_TOO_LARGE', message: expect.stringContaining(`larger than ${MAX_METADATA_BYTES} bytes`) }),
    ]);
    expect(x.proxy.requests(INDEX).length).toBe(1); // refused, not retried
    await assertSound(x, true);
  });

  it('a huge products file announced by Content-Length is refused before its body is read', async () => {
    const x = await world();
    await newVersion(x);
    on(x, V3_SJSON, Infinity, async (ctx) => (await streamSpaces(ctx, 70_000_000, true), 'huge'));
    const r = await x.sync();
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_METADATA_TOO_LARGE' })]);
    // The connection was dropped at the headers: far less than 70 MB went out.
    expect(x.proxy.bytesFor(V3_SJSON)).toBeLessThan(16 << 20);
    await assertSound(x, true);
  });

  it('an endless metadata body is not read far beyond the cap', async () => {
    const x = await world();
    on(x, INDEX, Infinity, async (ctx) => (await streamSpaces(ctx, 1 << 30, false), 'endless'));
    const r = await x.sync();
    expect(r.failures).toEqual([expect.objectContaining({ code: 'MM_METADATA_TOO_LARGE' })]);
    // Up to the cap, plus what the sockets buffer; not the gigabyte.
    expect(x.proxy.bytesFor(INDEX)).toBeLessThan(MAX_METADATA_BYTES + (32 << 20));
    await assertSound(x, true);
  });
});
