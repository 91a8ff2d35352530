import { createHash } from 'node:crypto';
import { mkdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startHttpServer, type HttpServerHandle } from '../../src/http/index.js';
import { silentLogger } from '../../src/log.js';
import { PullThroughService, type PullThroughDeps } from '../../src/mirror/pull-through.js';
import { BlobStore } from '../../src/store/blobs.js';
import { Layout } from '../../src/store/layout.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { sleep, waitFor } from './helpers.js';

/**
 * Pull-through against failures after the upstream answered: a local error
 * storing the bytes, and upstream bytes that are wrong. Each failure must end
 * the shared download (nothing stays in flight), destroy the upstream body,
 * tell the client no local path, and back the item off so a bad item costs
 * the upstream one transfer per window however many clients ask.
 */

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const SIZE = 8 << 20;

let env: Env | undefined;
let http: HttpServerHandle | undefined;
let service: PullThroughService | undefined;
afterEach(async () => {
  await http?.close(0);
  await service?.close();
  await env?.close();
  env = http = service = undefined;
});

async function setup(backoff?: PullThroughDeps['backoff']) {
  env = await makeEnv({ sizeOf: (ftype) => (ftype === 'squashfs' ? SIZE : 64 * 1024) });
  const config = env.config([{ onDemand: true, filters: [['os=ubuntu', 'arch=amd64']] }]);
  expect((await env.sync({ config })).result).toBe('ok');
  const layout = new Layout(env.dataDir);
  const store = new BlobStore(layout);
  service = new PullThroughService({ layout, store, logger: silentLogger(), config: () => config, backoff });
  http = await startHttpServer({ config, layout, logger: silentLogger(), listen: [{ host: '127.0.0.1', port: 0 }], pullThrough: service });
  const item = env.upstream.product(NOBLE_AMD64).doc.products[NOBLE_AMD64]!.versions['20250709']!.items.squashfs!;
  return { url: `http://127.0.0.1:${http.addresses[0]!.port}${PREFIX}${item.path}`, layout, store, item };
}

async function get(url: string): Promise<{ status: number; text: string; sha256?: string; retryAfter?: string }> {
  try {
    const res = await request(url);
    const h = createHash('sha256');
    let text = '';
    for await (const c of res.body) {
      h.update(c as Buffer);
      if (res.statusCode !== 200) text += c;
    }
    return { status: res.statusCode, text, sha256: h.digest('hex'), retryAfter: res.headers['retry-after'] as string | undefined };
  } catch {
    return { status: -1, text: '' };
  }
}

describe('pull-through failures', () => {
  it('a local failure after the upstream answered ends the download, destroys the body and shows no local path', async () => {
    const { url, layout, item } = await setup({ firstMs: 500, maxMs: 1000 });
    // The upstream sends slowly and records whether its answer was cut by the mirror.
    const upstream = { served: 0, cut: 0 };
    env!.server.intercept = async (_req, res, p) => {
      if (p !== item.path) return false;
      upstream.served++;
      const body = await readFile(join(env!.upstream.dir, p));
      res.writeHead(200, { 'Content-Length': String(body.length) });
      res.on('close', () => {
        if (!res.writableFinished) upstream.cut++;
      });
      for (let pos = 0; pos < body.length && !res.destroyed; pos += 64 * 1024) {
        res.write(body.subarray(pos, pos + 64 * 1024));
        await sleep(20);
      }
      res.end();
      return true;
    };
    // The partial file cannot be opened: a directory sits at its path.
    await mkdir(layout.partial(item.sha256), { recursive: true });

    const failed = await get(url);
    expect(failed.status).toBe(503);
    const body = JSON.parse(failed.text) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['code', 'message']);
    expect(body.code).toBe('MM_UPSTREAM_UNAVAILABLE');
    expect(failed.text).not.toContain(env!.dir);
    expect(failed.text).not.toContain('partial');
    // The upstream body is destroyed, not left half-read.
    await waitFor(() => upstream.cut === 1, 10_000, 'the upstream answer to be cut');

    // Nothing stays in flight: once the back-off window is over, the item is fetched again and served.
    await rmdir(layout.partial(item.sha256));
    await sleep(600);
    const again = await get(url);
    expect(again).toMatchObject({ status: 200, sha256: item.sha256 });
    expect(upstream.served).toBe(2);
  });

  it('fetches an item with corrupt upstream bytes once per back-off window, however many clients ask', async () => {
    const { url, store, item } = await setup({ firstMs: 3000, maxMs: 600_000 });
    let bytes = 0;
    env!.server.intercept = async (_req, res, p) => {
      if (p !== item.path) return false;
      const body = await readFile(join(env!.upstream.dir, p));
      body[body.length - 10] = body[body.length - 10]! ^ 0xff;
      bytes += body.length;
      res.writeHead(200, { 'Content-Length': String(body.length) }).end(body);
      return true;
    };
    const wave = () => Promise.all(Array.from({ length: 10 }, () => get(url)));

    const first = await wave();
    const firstDone = Date.now();
    // Every client of the failed download is cut or told 503; none gets a clean end of wrong bytes.
    expect(first.every((r) => r.status === -1 || r.status === 503)).toBe(true);
    expect(env!.server.requests(item.path)).toHaveLength(1);

    const backingOff = await wave();
    expect(backingOff.map((r) => r.status)).toEqual(Array(10).fill(503));
    expect(Number(backingOff[0]!.retryAfter)).toBeGreaterThan(0);
    expect(Number(backingOff[0]!.retryAfter)).toBeLessThanOrEqual(3);
    expect(JSON.parse(backingOff[0]!.text)).toMatchObject({ code: 'MM_UPSTREAM_UNAVAILABLE' });
    expect(backingOff[0]!.text).toMatch(/upstream bytes are wrong/);
    expect(env!.server.requests(item.path)).toHaveLength(1);

    // The window is over: one more transfer, then a window twice as long.
    await sleep(Math.max(0, firstDone + 3200 - Date.now()));
    await wave();
    const doubled = await wave();
    expect(env!.server.requests(item.path)).toHaveLength(2);
    expect(doubled.map((r) => r.status)).toEqual(Array(10).fill(503));
    expect(Number(doubled[0]!.retryAfter)).toBeGreaterThan(3);
    expect(bytes).toBe(2 * item.size);
    expect(await store.has(item.sha256)).toBe(false);
    console.log(`corrupt upstream: 40 requests fetched ${bytes} bytes (${bytes / item.size} transfers of ${item.size})`);
  });
});
