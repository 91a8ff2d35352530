import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, readlink, statfs, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { blobNames, checkCurrent, cli, Gpgv, run, sha256, sha256Of, writeJsonConfig } from '../faults/helpers.js';

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const TOKEN = 'images-api-token-0123456789';
const LIMIT = 512 * 1024;

let env: Env;
let daemon: Daemon;
let base: string;
let gpgv: Gpgv;

beforeAll(async () => {
  env = await makeEnv({ sizeOf: () => 8 * 1024 });
  const config = env.config([{}], {
    schedule: { onStart: true, interval: '1h', jitter: '0s' },
    api: { token: TOKEN },
    images: { maxUploadBytes: LIMIT },
    tftp: { enabled: false },
  });
  daemon = await startDaemon({ config, logger: silentLogger(), httpListen: [{ host: '127.0.0.1', port: 0 }], drainMs: 2000, retryBaseMs: 5 });
  base = `http://127.0.0.1:${daemon.http.addresses[0]!.port}`;
  const c = daemon.ops.coordinator;
  const record = c.running ? (await once(c, 'end'))[0] : c.lastSync;
  expect(record.result).toBe('ok');
  // The mirror's public key, as an operator exports it for MAAS.
  const cfgFile = await writeJsonConfig(join(env.dir, 'api.yaml'), { dataDir: env.dataDir, sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }] });
  const keyring = join(env.dir, 'mirror.gpg');
  expect((await cli(['keys', 'export', '-o', keyring, '--config', cfgFile])).code).toBe(0);
  gpgv = await Gpgv.create(keyring);
});

afterAll(async () => {
  await daemon?.stop();
  await gpgv?.close();
  await env?.close();
});

async function tarball(name: string, bytes: number): Promise<string> {
  const dir = join(env.dir, `root-${name}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'payload'), randomBytes(bytes));
  const out = join(env.dir, `${name}.tar.gz`);
  expect((await run('tar', ['-czf', out, '-C', dir, '.'])).code).toBe(0);
  return out;
}

async function post(query: string, body: string | Buffer, token = TOKEN): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${base}/api/v1/images?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' },
    body: typeof body === 'string' ? createReadStream(body) : body,
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

async function get(path: string): Promise<{ status: number; body: Buffer }> {
  const res = await request(`${base}${path}`);
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

const unchanged = async () => ({
  current: await readlink(join(env.dataDir, 'current')),
  snapshots: (await readdir(join(env.dataDir, 'snapshots'))).sort(),
  blobs: [...(await blobNames(env.dataDir)).keys()].sort(),
  partial: (await readdir(join(env.dataDir, 'partial')).catch(() => [])).sort(),
});

describe('POST /api/v1/images', () => {
  it('takes a streamed upload, publishes it, and serves it byte-exact by tree path and by hash', async () => {
    const file = await tarball('ol', 200 * 1024);
    const sha = await sha256Of(file);
    const r = await post('os=ol&release=9&arch=amd64&title=Oracle%20Linux%209', file);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    expect(r.json).toMatchObject({ manifestGenerated: true, image: { os: 'ol', release: '9', arch: 'amd64', sha256: sha, title: 'Oracle Linux 9' } });
    const image = r.json.image as { path: string; version: string };

    const tree = (await checkCurrent(env.dataDir, gpgv))!;
    expect(tree.id).toBe(r.json.snapshot);
    expect(tree.items.get(image.path)).toBe(sha);

    const original = await readFile(file);
    const byPath = await get(`${PREFIX}${image.path}`);
    expect(byPath.status).toBe(200);
    expect(byPath.body.equals(original)).toBe(true);
    const byHash = await get(`/images/${sha.slice(0, 12)}/ol/amd64/generic/9/stable/root-tgz`);
    expect(byHash.status).toBe(200);
    expect(sha256(byHash.body)).toBe(sha);
    const index = await get(`${PREFIX}streams/v1/index.json`);
    expect(JSON.parse(index.body.toString()).index['local:custom-images'].path).toBe('streams/v1/local:custom-images.json');

    // The status page and its JSON list it.
    const status = await get('/status.json');
    expect(JSON.parse(status.body.toString()).localImages).toEqual([expect.objectContaining({ os: 'ol', release: '9', arch: 'amd64', source: '_local' })]);
    const page = await get('/');
    expect(page.body.toString()).toMatch(/<h2>Local images<\/h2>[\s\S]*Oracle Linux 9/);
    // The MAAS procedure on the page selects it, so pasting it imports the site's image too.
    expect(page.body.toString()).toMatch(/boot-source-selections create \S+ os=ol release=9 arches=amd64 /);
  });

  it('refuses without the token, over images.maxUploadBytes, and what images add refuses, changing nothing', async () => {
    const before = await unchanged();
    const small = await tarball('small', 1024);
    expect((await post('os=ol&release=8&arch=amd64', small, 'wrong-token-wrong-token')).status).toBe(401);

    const big = await tarball('big', LIMIT + 64 * 1024);
    const streamed = await post('os=ol&release=8&arch=amd64', big);
    expect(streamed.status, JSON.stringify(streamed.json)).toBe(413);
    expect(streamed.json.code).toBe('MM_UPLOAD_TOO_LARGE');
    const declared = await post('os=ol&release=8&arch=amd64', Buffer.alloc(LIMIT + 1));
    expect(declared.status).toBe(413);

    const notGzip = await post('os=ol&release=8&arch=amd64', Buffer.from('plain text'));
    expect(notGzip).toMatchObject({ status: 400, json: { code: 'MM_IMAGE_REFUSED' } });
    const windows = await post('os=windows&release=2022&arch=amd64', small);
    expect(windows.status).toBe(400);
    expect(String(windows.json.message)).toMatch(/root-dd/);
    const missing = await post('os=ol', small);
    expect(missing).toMatchObject({ status: 400, json: { code: 'MM_USAGE' } });
    expect(await unchanged()).toEqual(before);
  });
});

/** A request written by hand on a raw socket, so the test decides when (and whether) each body byte goes. */
interface RawRequest {
  readonly socket: Socket;
  /** Everything the server sent, once it closed the connection. */
  readonly closed: Promise<string>;
  /** Whether the connection has been closed by now. */
  isClosed(): boolean;
  /** The status line's code, once the head arrived. */
  status(): Promise<number>;
}

async function rawPost(port: number, path: string, contentLength: number, keepAlive = false): Promise<RawRequest> {
  const socket = connect(port, '127.0.0.1');
  onTestFinished(() => void socket.destroy());
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  let data = '';
  let closed = false;
  socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
  const done = new Promise<string>((resolve) => socket.once('close', () => ((closed = true), resolve(data))));
  socket.write(
    `POST ${path} HTTP/1.1\r\nHost: mirror\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/gzip\r\n` +
      `Content-Length: ${contentLength}\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`,
  );
  return {
    socket,
    closed: done,
    isClosed: () => closed,
    status: async () => {
      while (!/\r\n\r\n/.test(data) && !closed) await sleep(20);
      return Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
    },
  };
}

/** Writes `body` in `pieces`, waiting `pauseMs` before each; stops quietly once the server closed. */
async function trickle(r: RawRequest, body: Buffer, pieces: number, pauseMs: number): Promise<void> {
  const step = Math.ceil(body.length / pieces);
  for (let off = 0; off < body.length && !r.isClosed(); off += step) {
    await sleep(pauseMs);
    r.socket.write(body.subarray(off, off + step));
  }
}

const bodyOf = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;

describe('POST /api/v1/images: bounded by progress, refused before the body', () => {
  // Short bounds, so that a body taking longer than requestTimeout is seconds, not minutes.
  const REQUEST_TIMEOUT_MS = 2_000;
  const SEND_TIMEOUT_MS = 3_000;
  let e: Env;
  let d: Daemon;
  let port: number;
  const accepted: Socket[] = [];
  const partials = async () => (await readdir(join(e.dataDir, 'partial')).catch(() => [])).filter((f) => f.startsWith('upload-'));

  beforeAll(async () => {
    e = await makeEnv({ sizeOf: () => 4 * 1024 });
    const config = e.config([{}], {
      schedule: { onStart: true, interval: '1h', jitter: '0s' },
      api: { token: TOKEN },
      http: { requestTimeout: `${REQUEST_TIMEOUT_MS / 1000}s`, sendTimeout: `${SEND_TIMEOUT_MS / 1000}s` },
      images: { maxUploadBytes: 2 ** 52 },
      tftp: { enabled: false },
    });
    d = await startDaemon({ config, logger: silentLogger(), httpListen: [{ host: '127.0.0.1', port: 0 }], drainMs: 2000, retryBaseMs: 5 });
    port = d.http.addresses[0]!.port;
    d.http.servers[0]!.on('connection', (s: Socket) => accepted.push(s));
    const c = d.ops.coordinator;
    const record = c.running ? (await once(c, 'end'))[0] : c.lastSync;
    expect(record.result).toBe('ok');
  });

  afterAll(async () => {
    await d?.stop();
    await e?.close();
  });

  it('takes an upload slower than http.requestTimeout while bytes keep coming; the same pace elsewhere is cut', async () => {
    const body = await readFile(await tarball('slow', 96 * 1024));
    const pieces = 8;
    const pause = SEND_TIMEOUT_MS / 4;
    expect(pieces * pause).toBeGreaterThan(2 * REQUEST_TIMEOUT_MS);

    const upload = await rawPost(port, '/api/v1/images?os=ol&release=9&arch=amd64', body.length);
    await trickle(upload, body, pieces, pause);
    expect(await upload.status(), await upload.closed).toBe(201);
    expect(bodyOf(await upload.closed)).toMatchObject({ image: { os: 'ol', release: '9', sha256: sha256(body) } });

    // Any other request is still held to http.requestTimeout, answered early (404) or not: the connection is cut.
    const other = await rawPost(port, '/api/v1/nothing-here', pieces, true);
    await trickle(other, Buffer.alloc(pieces, 0x61), pieces, pause);
    expect(other.isClosed()).toBe(true);
  });

  it('cuts an upload that sends nothing for http.sendTimeout, and keeps nothing of it', async () => {
    const before = await unchanged2();
    const body = await readFile(await tarball('stall', 64 * 1024));
    const upload = await rawPost(port, '/api/v1/images?os=ol&release=8&arch=amd64', body.length);
    upload.socket.write(body.subarray(0, body.length / 2));
    const raw = await upload.closed;
    expect(raw).not.toMatch(/^HTTP\/1\.1 201/);
    for (let i = 0; i < 50 && (await partials()).length > 0; i++) await sleep(100);
    expect(await partials()).toEqual([]);
    expect(await unchanged2()).toEqual(before);
  });

  it('refuses a bad name, a clash, more than the disk holds and a second upload without reading a body byte', async () => {
    const before = await unchanged2();
    // Each declares a body far larger than anything sent: the answer must come with none of it read.
    const refused = async (query: string, length = 1024 ** 3) => {
      const r = await rawPost(port, `/api/v1/images?${query}`, length);
      const status = await r.status();
      const raw = await r.closed;
      // What the server read of this connection: the request head, nothing of a body.
      const head = r.socket.bytesWritten;
      expect(accepted.at(-1)!.bytesRead).toBe(head);
      return { status, json: bodyOf(raw), raw };
    };
    expect(await refused('os=debian&release=12&arch=amd64')).toMatchObject({ status: 400, json: { code: 'MM_IMAGE_REFUSED' } });
    expect(await refused('os=rhel&release=9%2F..&arch=amd64')).toMatchObject({ status: 400, json: { code: 'MM_IMAGE_REFUSED' } });
    const clash = await refused('os=ubuntu&release=noble&arch=amd64');
    expect(clash).toMatchObject({ status: 400, json: { code: 'MM_IMAGE_REFUSED' } });
    expect(String(clash.json.message)).toMatch(/already a mirrored product/);

    const free = (await statfs(e.dataDir)).bavail * (await statfs(e.dataDir)).bsize;
    const full = await refused('os=rhel&release=9&arch=amd64', free + 1024 ** 3);
    expect(full).toMatchObject({ status: 507, json: { code: 'MM_UPLOAD_NO_SPACE' } });

    // One upload at a time: a second is told to come back, the first goes on.
    const body = await readFile(await tarball('first', 32 * 1024));
    const first = await rawPost(port, '/api/v1/images?os=rhel&release=9&arch=amd64', body.length);
    first.socket.write(body.subarray(0, 1024));
    for (let i = 0; i < 50 && (await partials()).length === 0; i++) await sleep(50);
    const second = await refused('os=rhel&release=8&arch=amd64');
    expect(second).toMatchObject({ status: 503, json: { code: 'MM_UPLOAD_BUSY' } });
    expect(second.raw).toMatch(/\r\nretry-after: 60\r\n/i);
    expect(await unchanged2()).toMatchObject({ current: before.current, snapshots: before.snapshots });
    first.socket.write(body.subarray(1024));
    expect(await first.status(), await first.closed).toBe(201);
  });

  const unchanged2 = async () => ({
    current: await readlink(join(e.dataDir, 'current')),
    snapshots: (await readdir(join(e.dataDir, 'snapshots'))).sort(),
    blobs: [...(await blobNames(e.dataDir)).keys()].sort(),
  });
});
