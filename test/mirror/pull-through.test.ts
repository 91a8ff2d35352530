import { createHash } from 'node:crypto';
import { access, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startHttpServer, type HttpServerHandle } from '../../src/http/index.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { PullThroughService } from '../../src/mirror/pull-through.js';
import { BlobStore } from '../../src/store/blobs.js';
import { Layout } from '../../src/store/layout.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { captureLogger } from '../http/fixture.js';

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

let env: Env | undefined;
let http: HttpServerHandle | undefined;
let service: PullThroughService | undefined;
afterEach(async () => {
  await http?.close(0);
  await service?.close();
  await env?.close();
  env = http = service = undefined;
});

interface Setup {
  base: string;
  layout: Layout;
  store: BlobStore;
  item: { path: string; sha256: string; size: number };
}

async function setup(options: { logger?: Logger } = {}): Promise<Setup> {
  env = await makeEnv({ sizeOf: (ftype) => (ftype === 'squashfs' ? 3 << 20 : 64 * 1024) });
  const config = env.config([{ onDemand: true, filters: [['os=ubuntu', 'arch=amd64']] }]);
  const report = await env.sync({ config });
  expect(report.result).toBe('ok');
  expect(report.downloaded.files).toBe(0);
  const layout = new Layout(env.dataDir);
  const store = new BlobStore(layout);
  service = new PullThroughService({ layout, store, logger: silentLogger(), config: () => config });
  http = await startHttpServer({ config, layout, logger: options.logger ?? silentLogger(), listen: [{ host: '127.0.0.1', port: 0 }], pullThrough: service });
  const { doc } = env.upstream.product(NOBLE_AMD64);
  const item = doc.products[NOBLE_AMD64]!.versions['20250709']!.items.squashfs!;
  return { base: `http://127.0.0.1:${http.addresses[0]!.port}`, layout, store, item };
}

async function fetchSha(url: string): Promise<{ status: number; sha256?: string; error?: string; body?: string }> {
  try {
    const res = await request(url);
    const h = createHash('sha256');
    let text = '';
    for await (const c of res.body) {
      h.update(c as Buffer);
      if (res.statusCode !== 200) text += c;
    }
    return { status: res.statusCode, sha256: h.digest('hex'), body: text };
  } catch (err) {
    return { status: -1, error: (err as Error).message };
  }
}

describe('pull-through of on-demand items', () => {
  it('publishes before holding; concurrent first requests share one upstream download; the file is then stored', async () => {
    const { base, store, item } = await setup();
    expect(await store.has(item.sha256)).toBe(false);
    env!.server.throttle = 4 << 20; // keep the transfer open while the others join
    const results = await Promise.all(Array.from({ length: 5 }, () => fetchSha(`${base}${PREFIX}${item.path}`)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(results.every((r) => r.sha256 === item.sha256)).toBe(true);
    expect(env!.server.requests(item.path).length).toBe(1);
    expect(await store.has(item.sha256, item.size)).toBe(true);
    // Served from the store from now on, even with the upstream gone.
    await env!.server.stop();
    const again = await fetchSha(`${base}${PREFIX}${item.path}`);
    expect(again).toMatchObject({ status: 200, sha256: item.sha256 });
  });

  it('aborts the client connection on corrupt upstream bytes and stores nothing', async () => {
    const { base, layout, store, item } = await setup();
    env!.server.intercept = async (_req, res, p) => {
      if (p !== item.path) return false;
      const body = await readFile(join(env!.upstream.dir, p));
      body[body.length - 10] = body[body.length - 10]! ^ 0xff;
      res.writeHead(200, { 'Content-Length': String(body.length) }).end(body);
      return true;
    };
    const r = await fetchSha(`${base}${PREFIX}${item.path}`);
    expect(r.status).toBe(-1);
    expect(await store.has(item.sha256)).toBe(false);
    // The partial file is dropped too (just after the cut: the client hears of the failure first).
    await vi.waitFor(async () => expect(await exists(layout.partial(item.sha256))).toBe(false), { timeout: 2000, interval: 20 });
  });

  it('closes its file when the client leaves while the upstream is still slow to answer', async () => {
    const { base, layout, store, item } = await setup();
    // The upstream answers only after the client has given up.
    env!.server.intercept = async () => {
      await new Promise((r) => setTimeout(r, 500));
      return false;
    };
    await request(`${base}${PREFIX}${item.path}`, { signal: AbortSignal.timeout(150) }).then(
      (r) => r.body.dump(),
      () => undefined,
    );
    await vi.waitFor(async () => expect(await store.has(item.sha256)).toBe(true), { timeout: 5000, interval: 20 });
    // Nothing of this process still holds the partial file or the blob open.
    const open = async () => {
      const held: string[] = [];
      for (const fd of await readdir('/proc/self/fd')) {
        const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
        if (target === layout.partial(item.sha256) || target === store.path(item.sha256)) held.push(target);
      }
      return held;
    };
    await vi.waitFor(async () => expect(await open()).toEqual([]), { timeout: 2000, interval: 50 });
  });

  it('answers 503 with a clear message when the upstream is unreachable, and keeps serving what it holds', async () => {
    const { base, item } = await setup();
    await env!.server.stop();
    const r = await fetchSha(`${base}${PREFIX}${item.path}`);
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/not held yet and the upstream cannot be reached/);
    const index = await fetchSha(`${base}${PREFIX}streams/v1/index.sjson`);
    expect(index.status).toBe(200);
  });

  it('answers a pulled-through item like a held one: Range 206, If-None-Match 304, validators', async () => {
    const { base, item } = await setup();
    const url = `${base}${PREFIX}${item.path}`;
    expect(await fetchSha(url)).toMatchObject({ status: 200, sha256: item.sha256 });
    const whole = await readFile(join(env!.upstream.dir, item.path));
    const etag = `"${item.sha256}"`;

    const ranged = await request(url, { headers: { range: 'bytes=100-199' } });
    const part = Buffer.from(await ranged.body.arrayBuffer());
    expect(ranged.statusCode).toBe(206);
    expect(ranged.headers['content-range']).toBe(`bytes 100-199/${item.size}`);
    expect(ranged.headers['accept-ranges']).toBe('bytes');
    expect(ranged.headers.etag).toBe(etag);
    expect(ranged.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(part.equals(whole.subarray(100, 200))).toBe(true);

    const resumed = await request(url, { headers: { range: `bytes=${item.size - 10}-`, 'if-range': etag } });
    expect(resumed.statusCode).toBe(206);
    expect(Buffer.from(await resumed.body.arrayBuffer()).equals(whole.subarray(item.size - 10))).toBe(true);

    const notModified = await request(url, { headers: { 'if-none-match': etag } });
    await notModified.body.dump();
    expect(notModified.statusCode).toBe(304);
    expect(notModified.headers.etag).toBe(etag);
    const lastModified = notModified.headers['last-modified'] as string;
    expect(Number.isNaN(Date.parse(lastModified))).toBe(false);
    const sinceDate = await request(url, { headers: { 'if-modified-since': lastModified } });
    await sinceDate.body.dump();
    expect(sinceDate.statusCode).toBe(304);
    expect(env!.server.requests(item.path).length).toBe(1);
  });

  it('answers a Range with 206 from the partial file while the first download runs', async () => {
    const { base, store, item } = await setup();
    env!.server.throttle = 4 << 20;
    const whole = await readFile(join(env!.upstream.dir, item.path));
    const from = item.size - 1000;
    const res = await request(`${base}${PREFIX}${item.path}`, { headers: { range: `bytes=${from}-` } });
    expect(await store.has(item.sha256)).toBe(false); // the answer began before the file was stored
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes ${from}-${item.size - 1}/${item.size}`);
    expect(res.headers['content-length']).toBe('1000');
    expect(body.equals(whole.subarray(from))).toBe(true);
    expect(await store.has(item.sha256, item.size)).toBe(true);
  });

  it('counts the body bytes of pull-through answers in the access log', async () => {
    const log = captureLogger('info');
    const { base, item } = await setup({ logger: log.logger });
    const url = `${base}${PREFIX}${item.path}`;
    expect(await fetchSha(url)).toMatchObject({ status: 200, sha256: item.sha256 }); // streamed from upstream
    const ranged = await request(url, { headers: { range: 'bytes=0-99' } }); // from the stored blob
    await ranged.body.dump();
    await vi.waitFor(() => expect(log.lines.filter((l) => l.msg === 'request')).toHaveLength(2), { timeout: 2000, interval: 10 });
    const access = log.lines.filter((l) => l.msg === 'request');
    expect(access[0]).toMatchObject({ method: 'GET', path: PREFIX + item.path, status: 200, bytes: item.size });
    expect(access[1]).toMatchObject({ method: 'GET', path: PREFIX + item.path, status: ranged.statusCode, bytes: 100 });
  });

  it('answers HEAD and a matching If-None-Match from the manifest without contacting the upstream', async () => {
    const { base, layout, store, item } = await setup();
    const url = `${base}${PREFIX}${item.path}`;
    const head = await request(url, { method: 'HEAD' });
    await head.body.dump();
    const revalidate = await request(url, { headers: { 'if-none-match': `"${item.sha256}"` } });
    await revalidate.body.dump();
    await new Promise((r) => setTimeout(r, 200)); // a download started in the background would show by now
    expect(env!.server.requests(item.path)).toHaveLength(0);
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe(String(item.size));
    expect(head.headers.etag).toBe(`"${item.sha256}"`);
    expect(head.headers['accept-ranges']).toBe('bytes');
    expect(revalidate.statusCode).toBe(304);
    expect(await exists(layout.partial(item.sha256))).toBe(false);
    expect(await store.has(item.sha256)).toBe(false);
  });

  it('serves the stored blob when the partial was renamed into the store before the download is marked finished', async () => {
    const { base, store, item } = await setup();
    const adopt = store.adopt.bind(store);
    const path = store.path.bind(store);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let renamed!: () => void;
    const adopted = new Promise<void>((r) => (renamed = r));
    // The rename is done; the directory fsync (and so `finished`) is still to come.
    store.adopt = async (file, sha256) => {
      const target = await adopt(file, sha256);
      renamed();
      await gate;
      return target;
    };
    const url = `${base}${PREFIX}${item.path}`;
    const first = fetchSha(url);
    await adopted;
    // The late request's store check ran just before the rename: it misses the blob once.
    let missed = false;
    store.path = (sha256) => {
      if (missed) return path(sha256);
      missed = true;
      return `${path(sha256)}.not-yet`;
    };
    const late = await request(url, { headers: { range: 'bytes=0-99' } });
    const body = Buffer.from(await late.body.arrayBuffer());
    release();
    expect(late.statusCode).toBe(206);
    expect(body.equals((await readFile(join(env!.upstream.dir, item.path))).subarray(0, 100))).toBe(true);
    expect(await first).toMatchObject({ status: 200, sha256: item.sha256 });
  });
});

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
