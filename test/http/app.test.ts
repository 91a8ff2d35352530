import { once } from 'node:events';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createServer, get as httpGet } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import express, { type Express } from 'express';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApp, type HttpApp } from '../../src/http/index.js';
import { Resolver } from '../../src/store/resolver.js';
import type { PullThrough } from '../../src/http/pull-through.js';
import { rawGet } from '../helpers/raw-http.js';
import { captureLogger, publishSnapshot, sampleTree, sha256, snapshotId, tempDataDir, type CapturedLogger, type TempData } from './fixture.js';

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const config = { http: { prefix: PREFIX, listen: [{ host: '127.0.0.1', port: 0 }], publicUrl: undefined } };
const KERNEL = 'ubuntu/amd64/ga-24.04/noble/stable/20250701/boot-kernel';
const INITRD = 'ubuntu/amd64/ga-24.04/noble/stable/20250701/boot-initrd';
const KEY_BIN = Buffer.from([0x99, 0x01, 0x0d, 0x04, 0xff, 0x00, 0x10]);
const KEY_ASC = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF...\n-----END PGP PUBLIC KEY BLOCK-----\n';

let t: TempData;
let log: CapturedLogger;
let app: HttpApp;
let tree: ReturnType<typeof sampleTree>;
const pulled: string[] = [];

/** A binary-safe body for supertest. */
function binary(res: request.Response, cb: (err: Error | null, body: Buffer) => void) {
  const stream = res as unknown as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => cb(null, Buffer.concat(chunks)));
}

/** GET with the body as text whatever its type. */
async function getText(a: HttpApp, path: string, headers: Record<string, string> = {}) {
  const res = await request(a).get(path).set(headers).buffer(true).parse(binary);
  return { res, text: (res.body as Buffer).toString() };
}

beforeAll(async () => {
  t = await tempDataDir('mm-app-');
  log = captureLogger('info');
  tree = sampleTree('one');
  await publishSnapshot(t.layout, {
    id: snapshotId(1),
    metadata: tree.metadata,
    items: { ...tree.items, 'ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs': { content: 'SQUASHFS-ON-DEMAND', held: false } },
  });
  await mkdir(t.layout.keysDir, { recursive: true });
  await writeFile(join(t.layout.keysDir, 'public.gpg'), KEY_BIN);
  await writeFile(join(t.layout.keysDir, 'public.asc'), KEY_ASC);
  const bl = join(t.layout.bootloadersStore, snapshotId(1));
  await mkdir(join(bl, 'uefi/amd64'), { recursive: true });
  await mkdir(join(bl, 'pxe/amd64'), { recursive: true });
  await writeFile(join(bl, 'uefi/amd64/bootx64.efi'), 'SHIM-AMD64');
  await writeFile(join(bl, 'uefi/amd64/grubx64.efi'), 'GRUB-AMD64');
  await writeFile(join(bl, 'pxe/amd64/lpxelinux.0'), 'LPXELINUX');
  await writeFile(join(bl, 'pxe/amd64/ldlinux.c32'), 'LDLINUX');
  await symlink(join('bootloaders.d', snapshotId(1)), t.layout.bootloaders);
  app = createHttpApp({
    config,
    layout: t.layout,
    logger: log.logger,
    routes: (a: Express) => {
      const api = express.Router();
      api.post('/ping', (_req, res) => {
        res.json({ pong: true });
      });
      a.use('/api', api);
    },
  });
});

afterAll(async () => {
  await t.cleanup();
});

describe('region tree', () => {
  it('serves metadata with exact length, type, strong content ETag and no-cache', async () => {
    for (const [path, type] of [
      ['streams/v1/index.json', 'application/json'],
      ['streams/v1/index.sjson', 'text/plain; charset=utf-8'],
      ['streams/v1/index.json.gpg', 'application/pgp-signature'],
      ['streams/v1/com.ubuntu.maas:stable:v3:download.sjson', 'text/plain; charset=utf-8'],
    ] as const) {
      const body = tree.metadata[path]!;
      const res = await request(app).get(PREFIX + path).set('Accept-Encoding', 'identity').buffer(true).parse(binary);
      expect(res.status, path).toBe(200);
      expect(res.headers['content-type']).toBe(type);
      expect(res.headers['content-length']).toBe(String(Buffer.byteLength(body)));
      expect(res.headers.etag).toBe(`"${sha256(body)}"`);
      expect(res.headers['cache-control']).toBe('no-cache');
      expect(new Date(res.headers['last-modified']!).getTime()).toBeGreaterThan(0);
      expect(res.headers['accept-ranges']).toBe('bytes');
      expect((res.body as Buffer).toString()).toBe(body);
    }
  });

  it('percent-encoded names reach the same file', async () => {
    const res = await request(app).get(`${PREFIX}streams/v1/com.ubuntu.maas%3Astable%3Av3%3Adownload.json`);
    expect(res.status).toBe(200);
    expect(res.text).toBe(tree.metadata['streams/v1/com.ubuntu.maas:stable:v3:download.json']);
  });

  it('gzips metadata on request, with Vary and its own ETag', async () => {
    const path = 'streams/v1/index.json';
    const res = await request(app).get(PREFIX + path).set('Accept-Encoding', 'gzip').buffer(true).parse(binary);
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(res.headers.vary).toBe('Accept-Encoding');
    expect(res.headers.etag).toBe(`"${sha256(tree.metadata[path]!)}-gzip"`);
    const plain = await request(app).get(PREFIX + path).set('Accept-Encoding', 'identity');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers.vary).toBe('Accept-Encoding');
    const refused = await request(app).get(PREFIX + path).set('Accept-Encoding', 'gzip;q=0, br');
    expect(refused.headers['content-encoding']).toBeUndefined();
    // The bytes on the wire (node:http does not unzip, unlike supertest): gzip, and the file once unzipped.
    const server = createServer(app).listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const wire = await new Promise<Buffer>((resolve, reject) => {
        httpGet({ host: '127.0.0.1', port, path: PREFIX + path, headers: { 'accept-encoding': 'gzip' } }, (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => resolve(Buffer.concat(chunks)));
          r.on('error', reject);
        }).on('error', reject);
      });
      expect([...wire.subarray(0, 2)]).toEqual([0x1f, 0x8b]);
      expect(gunzipSync(wire).toString()).toBe(tree.metadata[path]);
    } finally {
      server.close();
    }
    const again = await request(app).get(PREFIX + path).set('Accept-Encoding', 'gzip').set('If-None-Match', res.headers.etag!);
    expect(again.status).toBe(304);
  });

  it('serves items as immutable octet-streams tagged with their sha256', async () => {
    const body = tree.items[KERNEL]!;
    const res = await request(app).get(PREFIX + KERNEL).buffer(true).parse(binary);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['content-length']).toBe(String(body.length));
    expect(res.headers.etag).toBe(`"${sha256(body)}"`);
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(res.headers.vary).toBeUndefined();
    expect((res.body as Buffer).toString()).toBe(body);
    const gz = await request(app).get(PREFIX + KERNEL).set('Accept-Encoding', 'gzip');
    expect(gz.headers['content-encoding']).toBeUndefined();
  });

  it('answers HEAD with the GET headers and no body', async () => {
    const body = tree.items[INITRD]!;
    const res = await request(app).head(PREFIX + INITRD);
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(body.length));
    expect(res.headers.etag).toBe(`"${sha256(body)}"`);
    expect(res.body).toEqual({});
    const meta = await request(app).head(PREFIX + 'streams/v1/index.sjson').set('Accept-Encoding', 'identity');
    expect(meta.headers['content-length']).toBe(String(Buffer.byteLength(tree.metadata['streams/v1/index.sjson']!)));
    // Range is defined for GET only (RFC 9110 §14.2): a HEAD ignores it, as the matching full GET would.
    const ranged = await request(app).head(PREFIX + INITRD).set('Range', 'bytes=0-3');
    expect(ranged.status).toBe(200);
    expect(ranged.headers['content-length']).toBe(String(body.length));
    expect(ranged.headers['content-range']).toBeUndefined();
    const unsatisfiable = await request(app).head(PREFIX + INITRD).set('Range', `bytes=${body.length}-`);
    expect(unsatisfiable.status).toBe(200);
  });

  it('honours single ranges, answers 416 when unsatisfiable, and the whole file for several', async () => {
    const body = Buffer.from(tree.items[INITRD]!);
    const size = body.length;
    const get = (range: string, path = PREFIX + INITRD) => request(app).get(path).set('Range', range).buffer(true).parse(binary);
    let res = await get('bytes=0-9');
    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe(`bytes 0-9/${size}`);
    expect(res.headers['content-length']).toBe('10');
    expect(res.body).toEqual(body.subarray(0, 10));
    res = await get('bytes=-5');
    expect(res.headers['content-range']).toBe(`bytes ${size - 5}-${size - 1}/${size}`);
    expect(res.body).toEqual(body.subarray(size - 5));
    res = await get(`bytes=${size - 3}-`);
    expect(res.body).toEqual(body.subarray(size - 3));
    res = await get(`bytes=10-${size * 2}`);
    expect(res.headers['content-range']).toBe(`bytes 10-${size - 1}/${size}`);
    res = await get(`bytes=${size}-`);
    expect(res.status).toBe(416);
    expect(res.headers['content-range']).toBe(`bytes */${size}`);
    res = await get('bytes=0-1,5-6');
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(size));
    res = await get('bytes=9-2');
    expect(res.status).toBe(200);
    res = await get('items=0-1');
    expect(res.status).toBe(200);
    const meta = tree.metadata['streams/v1/index.json']!;
    res = await get('bytes=2-4', PREFIX + 'streams/v1/index.json');
    expect(res.status).toBe(206);
    expect((res.body as Buffer).toString()).toBe(meta.slice(2, 5));
  });

  it('answers conditional requests: If-None-Match, If-Modified-Since, If-Range, If-Match', async () => {
    const body = tree.items[KERNEL]!;
    const etag = `"${sha256(body)}"`;
    const first = await request(app).get(PREFIX + KERNEL);
    const lastModified = first.headers['last-modified']!;
    let res = await request(app).get(PREFIX + KERNEL).set('If-None-Match', etag);
    expect(res.status).toBe(304);
    expect(res.headers.etag).toBe(etag);
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(res.text).toBe('');
    res = await request(app).get(PREFIX + KERNEL).set('If-None-Match', `"other", W/${etag}`);
    expect(res.status).toBe(304);
    res = await request(app).get(PREFIX + KERNEL).set('If-None-Match', '"other"');
    expect(res.status).toBe(200);
    res = await request(app).get(PREFIX + KERNEL).set('If-Modified-Since', lastModified);
    expect(res.status).toBe(304);
    res = await request(app).get(PREFIX + KERNEL).set('If-Modified-Since', 'Thu, 01 Jan 1970 00:00:00 GMT');
    expect(res.status).toBe(200);
    // If-None-Match wins over If-Modified-Since.
    res = await request(app).get(PREFIX + KERNEL).set('If-None-Match', '"other"').set('If-Modified-Since', lastModified);
    expect(res.status).toBe(200);
    res = await request(app).get(PREFIX + KERNEL).set('Range', 'bytes=0-3').set('If-Range', etag);
    expect(res.status).toBe(206);
    res = await request(app).get(PREFIX + KERNEL).set('Range', 'bytes=0-3').set('If-Range', '"stale"');
    expect(res.status).toBe(200);
    res = await request(app).get(PREFIX + KERNEL).set('Range', 'bytes=0-3').set('If-Range', lastModified);
    expect(res.status).toBe(206);
    res = await request(app).get(PREFIX + KERNEL).set('If-Match', '"stale"');
    expect(res.status).toBe(412);
    const meta = await request(app).get(PREFIX + 'streams/v1/index.sjson');
    res = await request(app).get(PREFIX + 'streams/v1/index.sjson').set('If-None-Match', meta.headers.etag!);
    expect(res.status).toBe(304);
  });

  it('lists no directories', async () => {
    for (const path of [PREFIX, PREFIX + 'streams/v1/', PREFIX + 'streams', PREFIX + 'ubuntu/amd64/', '/maas/images/']) {
      const res = await request(app).get(path);
      expect(res.status, path).toBe(404);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(res.body.code).toBe('MM_NOT_FOUND');
    }
  });

  it('answers 503 for an on-demand item not yet held', async () => {
    const res = await request(app).get(PREFIX + 'ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs');
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('MM_NOT_HELD');
    expect(res.body.message).toContain('not yet held; pull-through not available');
  });

  it('hands not-held items to the pull-through hook when there is one', async () => {
    const hook: PullThrough = async (file, _req, res) => {
      pulled.push(file.path);
      res.statusCode = 200;
      res.setHeader('Content-Type', 'application/octet-stream');
      res.end(`pulled ${file.sha256}`);
    };
    const withHook = createHttpApp({ config, layout: t.layout, logger: log.logger, pullThrough: hook });
    const res = await request(withHook).get(PREFIX + 'ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs');
    expect(res.status).toBe(200);
    expect(pulled).toEqual(['ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs']);
    const viaHash = await getText(withHook, `/images/${sha256('SQUASHFS-ON-DEMAND').slice(0, 12)}/x`);
    expect(viaHash.text).toBe(`pulled ${sha256('SQUASHFS-ON-DEMAND')}`);
  });

  it('never puts a stack trace in a body', async () => {
    const failing = createHttpApp({
      config,
      layout: t.layout,
      logger: log.logger,
      pullThrough: async () => {
        throw new Error('boom /secret/path');
      },
    });
    const res = await request(failing).get(PREFIX + 'ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ code: 'MM_INTERNAL', message: 'internal error; the server log has the details' });
    expect(res.text).not.toMatch(/boom|at .*\.ts|secret/);
  });
});

describe('keyrings', () => {
  it('serves the binary and armored public key', async () => {
    const bin = await request(app).get('/keyring.gpg').buffer(true).parse(binary);
    expect(bin.status).toBe(200);
    expect(bin.headers['content-type']).toBe('application/pgp-keys');
    expect(bin.body).toEqual(KEY_BIN);
    expect(bin.headers.etag).toBe(`"${sha256(KEY_BIN)}"`);
    const asc = await request(app).get('/keyring.asc');
    expect(asc.headers['content-type']).toBe('application/pgp-keys');
    expect(asc.text).toBe(KEY_ASC);
  });

  it('says what to do when there is no key yet', async () => {
    const empty = await tempDataDir('mm-nokey-');
    try {
      const a = createHttpApp({ config, layout: empty.layout, logger: log.logger });
      const res = await request(a).get('/keyring.gpg');
      expect(res.status).toBe(404);
      expect(res.body.message).toContain('maas-mirror sync');
      const tree = await request(a).get(PREFIX + 'streams/v1/index.json');
      expect(tree.status).toBe(503);
      expect(tree.body.code).toBe('MM_NO_SNAPSHOT');
    } finally {
      await empty.cleanup();
    }
  });
});

describe('rack-facing hash paths', () => {
  it('selects by hash prefix whatever the label', async () => {
    const body = tree.items[KERNEL]!;
    const h = sha256(body);
    for (const path of [
      `/MAAS/boot-resources/${h.slice(0, 7)}/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel`,
      `/images/${h.slice(0, 7)}/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel`,
      `/images/${h.slice(0, 20).toUpperCase()}/anything`,
      `/images/${h}/x`,
    ]) {
      const res = await request(app).get(path).buffer(true).parse(binary);
      expect(res.status, path).toBe(200);
      expect((res.body as Buffer).toString()).toBe(body);
      expect(res.headers.etag).toBe(`"${h}"`);
    }
    const full = await request(app).get(`/images/${h}/x`);
    expect(full.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    const short = await request(app).get(`/images/${h.slice(0, 7)}/x`);
    expect(short.headers['cache-control']).toBe('no-cache');
    const ranged = await getText(app, `/images/${h.slice(0, 7)}/x`, { Range: 'bytes=5-9' });
    expect(ranged.res.status).toBe(206);
    expect(ranged.text).toBe(body.slice(5, 10));
  });

  it('answers 404 for no match and 409 with full candidates for several', async () => {
    const none = await request(app).get('/images/0000000/x');
    expect(none.status).toBe(404);
    expect(none.body.code).toBe('MM_NOT_FOUND');

    const ambiguous = await tempDataDir('mm-amb-');
    try {
      const id = snapshotId(9);
      await publishSnapshot(ambiguous.layout, { id });
      const m = JSON.parse(await readFile(ambiguous.layout.manifest(id), 'utf8'));
      const h1 = 'abcdef0' + '1'.repeat(57);
      const h2 = 'abcdef0' + '2'.repeat(57);
      m.files = { a: { sha256: h1, size: 1, source: 's', held: true }, b: { sha256: h2, size: 1, source: 's', held: true } };
      await writeFile(ambiguous.layout.manifest(id), JSON.stringify(m));
      const a = createHttpApp({ config, layout: ambiguous.layout, logger: log.logger });
      const res = await request(a).get('/MAAS/boot-resources/abcdef0/ubuntu/noble');
      expect(res.status).toBe(409);
      expect(res.body.code).toBe('MM_HASH_AMBIGUOUS');
      expect(res.body.candidates).toEqual([h1, h2]);
    } finally {
      await ambiguous.cleanup();
    }
  });
});

describe('bootloaders', () => {
  it('serves them by folder path, bare name, images/ name, alias and backslash', async () => {
    for (const [path, body] of [
      ['/bootloaders/uefi/amd64/bootx64.efi', 'SHIM-AMD64'],
      ['/bootx64.efi', 'SHIM-AMD64'],
      ['/grubx64.efi', 'GRUB-AMD64'],
      ['/images/bootx64.efi', 'SHIM-AMD64'],
      ['/%5Cbootx64.efi', 'SHIM-AMD64'],
      ['/lpxelinux.0', 'LPXELINUX'],
      ['/pxelinux.0', 'LPXELINUX'],
      ['/ldlinux.c32', 'LDLINUX'],
      ['/syslinux/ldlinux.c32', 'LDLINUX'],
    ]) {
      const res = await request(app).get(path!).buffer(true).parse(binary);
      expect(res.status, path).toBe(200);
      expect((res.body as Buffer).toString(), path).toBe(body);
      expect(res.headers['content-type']).toBe('application/octet-stream');
      expect(res.headers.etag).toBe(`"${sha256(body!)}"`);
      expect(res.headers['cache-control']).toBe('no-cache');
    }
    const missing = await request(app).get('/bootaa64.efi');
    expect(missing.status).toBe(404);
    expect(missing.body.message).toContain('uefi/arm64/bootaa64.efi');
    const ranged = await getText(app, '/bootx64.efi', { Range: 'bytes=0-3' });
    expect(ranged.res.status).toBe(206);
    expect(ranged.text).toBe('SHIM');
  });
});

describe('methods, hooks, log', () => {
  it('answers 405 with Allow for anything but GET and HEAD', async () => {
    for (const method of ['post', 'put', 'delete', 'patch', 'options'] as const) {
      const res = await request(app)[method](PREFIX + 'streams/v1/index.json');
      expect(res.status, method).toBe(405);
      expect(res.headers.allow).toBe('GET, HEAD');
      if (method !== 'options') expect(res.body.code).toBe('MM_METHOD_NOT_ALLOWED');
    }
    const other = await request(app).post('/nothing/here');
    expect(other.status).toBe(405);
  });

  it('mounts extra routes before the catch-all', async () => {
    const res = await request(app).post('/api/ping');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ pong: true });
  });

  it('refuses unsafe paths with 400', async () => {
    for (const path of [`${PREFIX}..%2f..%2f..%2fkeys/public.gpg`, `${PREFIX}%2e%2e/%2e%2e/x`, '/images/%00', '/%c0%ae%c0%ae/x']) {
      const res = await request(app).get(path);
      expect(res.status, path).toBe(400);
      expect(res.body.code).toBe('MM_UNSAFE_PATH');
    }
  });

  it('writes one JSON access line per request', async () => {
    // Lines of earlier requests may still be on their way (they are written a millisecond later).
    await new Promise((r) => setTimeout(r, 20));
    log.lines.length = 0;
    await request(app).get(PREFIX + KERNEL).set('Range', 'bytes=0-99');
    await request(app).get('/nope');
    await new Promise((r) => setTimeout(r, 50));
    const access = log.lines.filter((l) => l.msg === 'request');
    expect(access).toHaveLength(2);
    expect(access[0]).toMatchObject({ component: 'http', method: 'GET', path: PREFIX + KERNEL, status: 206, bytes: 100 });
    expect(typeof access[0]!.ms).toBe('number');
    expect(String(access[0]!.client)).toMatch(/127\.0\.0\.1|::1/);
    expect(access[1]).toMatchObject({ method: 'GET', path: '/nope', status: 404 });
    // The same envelope as every other line of the logger.
    expect(Object.keys(access[0]!).slice(0, 4)).toEqual(['level', 'time', 'app', 'component']);
    expect(access[0]).toMatchObject({ level: 'info', app: 'maas-mirror' });
    expect(Number.isNaN(Date.parse(String(access[0]!.time)))).toBe(false);
  });

  it('logs odd paths as valid JSON and logs nothing below its level', async () => {
    // Lines of earlier requests may still be on their way (they are written a millisecond later).
    await new Promise((r) => setTimeout(r, 20));
    log.lines.length = 0;
    // Raw on the wire (clients would percent-encode them): a quote and a backslash must come out as the same string.
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    await rawGet({ host: '127.0.0.1', port: (server.address() as AddressInfo).port }, '/x"y\\z');
    await new Promise<void>((r) => server.close(() => r()));
    await new Promise((r) => setTimeout(r, 50));
    expect(log.lines.filter((l) => l.msg === 'request').map((l) => l.path)).toEqual(['/x"y\\z']);
    const quiet = captureLogger('warn');
    const a = createHttpApp({ config, layout: t.layout, logger: quiet.logger });
    await request(a).get(PREFIX + 'streams/v1/index.json');
    await new Promise((r) => setTimeout(r, 50));
    expect(quiet.lines).toEqual([]);
  });

  it('answers repeated small files from memory with exactly the headers of the first answer', async () => {
    const fresh = createHttpApp({ config, layout: t.layout, logger: log.logger });
    for (const [path, headers] of [
      [PREFIX + 'streams/v1/index.sjson', { 'Accept-Encoding': 'identity' }],
      [PREFIX + 'streams/v1/index.sjson', { 'Accept-Encoding': 'gzip' }],
      ['/bootx64.efi', { 'Accept-Encoding': 'identity' }],
    ] as const) {
      const first = await request(fresh).get(path).set(headers).buffer(true).parse(binary);
      const second = await request(fresh).get(path).set(headers).buffer(true).parse(binary);
      const head = await request(fresh).head(path).set(headers);
      expect(first.status, path).toBe(200);
      const strip = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'date'));
      expect(strip(second.headers), path).toEqual(strip(first.headers));
      expect(strip(head.headers), path).toEqual(strip(first.headers));
      expect(sha256(second.body as Buffer)).toBe(sha256(first.body as Buffer));
      // Conditional and Range requests on a remembered URL keep their own answers.
      expect((await request(fresh).get(path).set(headers).set('If-None-Match', first.headers.etag!)).status).toBe(304);
      const part = await request(fresh).get(path).set('Range', 'bytes=0-3').buffer(true).parse(binary);
      expect(part.status).toBe(206);
      expect((part.body as Buffer).length).toBe(4);
    }
  });

  it('follows a publish at once with invalidate(), and within linkTtlMs without', async () => {
    const quick = createHttpApp({ config, layout: t.layout, logger: log.logger, namespace: new Resolver({ layout: t.layout, linkTtlMs: 30 }) });
    // Twice: the second answer comes from the ready-made answers, which must not outlive the switch either.
    expect((await request(quick).get(PREFIX + 'streams/v1/index.json')).text).toBe(tree.metadata['streams/v1/index.json']);
    expect((await request(quick).get(PREFIX + 'streams/v1/index.json')).text).toBe(tree.metadata['streams/v1/index.json']);
    expect((await request(app).get(PREFIX + 'streams/v1/index.json')).text).toBe(tree.metadata['streams/v1/index.json']);
    const two = sampleTree('two');
    await publishSnapshot(t.layout, { id: snapshotId(2), metadata: two.metadata, items: two.items });
    await new Promise((r) => setTimeout(r, 60));
    const res = await request(quick).get(PREFIX + 'streams/v1/index.json');
    expect(res.text).toBe(two.metadata['streams/v1/index.json']);
    app.invalidate();
    expect((await request(app).get(PREFIX + 'streams/v1/index.json')).text).toBe(two.metadata['streams/v1/index.json']);
    const again = await getText(app, PREFIX + KERNEL);
    expect(again.text).toBe(two.items[KERNEL]);
    const oldHash = sha256(tree.items[KERNEL]!).slice(0, 10);
    expect((await request(app).get(`/images/${oldHash}/x`)).status).toBe(404);
  });
});
