import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
