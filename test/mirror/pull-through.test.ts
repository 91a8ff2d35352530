import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startHttpServer, type HttpServerHandle } from '../../src/http/index.js';
import { silentLogger } from '../../src/log.js';
import { PullThroughService } from '../../src/mirror/pull-through.js';
import { BlobStore } from '../../src/store/blobs.js';
import { Layout } from '../../src/store/layout.js';
import { makeEnv, type Env } from '../helpers/env.js';

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

async function setup(): Promise<{ base: string; store: BlobStore; item: { path: string; sha256: string; size: number } }> {
  env = await makeEnv({ sizeOf: (ftype) => (ftype === 'squashfs' ? 3 << 20 : 64 * 1024) });
  const config = env.config([{ onDemand: true, filters: [['os=ubuntu', 'arch=amd64']] }]);
  const report = await env.sync({ config });
  expect(report.result).toBe('ok');
  expect(report.downloaded.files).toBe(0);
  const layout = new Layout(env.dataDir);
  const store = new BlobStore(layout);
  service = new PullThroughService({ layout, store, logger: silentLogger(), config: () => config });
  http = await startHttpServer({ config, layout, logger: silentLogger(), listen: [{ host: '127.0.0.1', port: 0 }], pullThrough: service.handler });
  const { doc } = env.upstream.product(NOBLE_AMD64);
  const item = doc.products[NOBLE_AMD64]!.versions['20250709']!.items.squashfs!;
  return { base: `http://127.0.0.1:${http.addresses[0]!.port}`, store, item };
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
    const { base, store, item } = await setup();
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
});
