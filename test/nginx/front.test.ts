import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { ACCEL_HEADER } from '../../src/http/accel.js';
import { cli } from '../faults/helpers.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { freePort, waitFor } from '../ops/helpers.js';

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const NGINX = '/usr/sbin/nginx';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

interface Got {
  status: number;
  body: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Got> {
  const res = await request(url, { headers });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()), headers: res.headers };
}

/** The daemon on a loopback port, and nginx in front of it with the server block the CLI prints. */
async function frontAndBack(e: Env, extra: Record<string, unknown> = {}): Promise<{ daemon: Daemon; direct: string; front: string }> {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: apt-get install nginx-light (.ci/run installs it)`);
  const port = await freePort();
  const configFile = join(e.dir, 'mirror.json');
  await writeFile(configFile, JSON.stringify({ dataDir: e.dataDir, sources: [{ name: 'stable', url: e.server.url, keyring: e.key.keyring }], http: { listen: `127.0.0.1:${port}` }, tftp: { enabled: false }, schedule: { onStart: true, interval: '1h', jitter: '0s' }, ...extra }));
  const daemon = await startDaemon({
    config: e.config([{}], { schedule: { onStart: true, interval: '1h', jitter: '0s' }, ...extra }),
    logger: silentLogger(),
    httpListen: [{ host: '127.0.0.1', port }],
    tftpListen: [],
    drainMs: 1000,
    retryBaseMs: 5,
  });
  onTestFinished(() => daemon.stop());
  const c = daemon.ops.coordinator;
  if (c.running) await once(c, 'end');

  const frontPort = await freePort();
  const generated = await cli(['nginx-config', '--config', configFile, '--listen', `127.0.0.1:${frontPort}`]);
  expect(generated.code, generated.stderr).toBe(0);
  const dir = join(e.dir, 'nginx');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'site.conf'), generated.stdout);
  await writeFile(
    join(dir, 'nginx.conf'),
    [
      'daemon off;',
      process.getuid?.() === 0 ? 'user root;' : '',
      'worker_processes 1;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 256; }',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
      `  include ${dir}/site.conf;`,
      '}',
    ].join('\n'),
  );
  const proc = spawn(NGINX, ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  onTestFinished(async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGQUIT');
      await once(proc, 'exit');
    }
  });
  const front = `http://127.0.0.1:${frontPort}`;
  await waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`nginx exited: ${stderr}${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`);
      return request(`${front}/livez`).then((r) => (r.body.dump(), true), () => false);
    },
    10_000,
    'nginx',
  );
  return { daemon, direct: `http://127.0.0.1:${port}`, front };
}

describe('nginx in front (maas-mirror nginx-config)', () => {
  it('answers every route as maas-mirror does, with nginx sending the held bytes', async () => {
    env = await makeEnv();
    const { direct, front } = await frontAndBack(env);
    const kernel = env.upstream.product(NOBLE).doc.products[NOBLE]!.versions['20250709']!.items['boot-kernel']!;
    const same = [
      `${PREFIX}streams/v1/index.sjson`,
      `${PREFIX}streams/v1/index.json`,
      `${PREFIX}streams/v1/index.json.gpg`,
      `${PREFIX}${kernel.path}`,
      '/keyring.gpg',
      '/keyring.asc',
      `/MAAS/boot-resources/${kernel.sha256.slice(0, 12)}/anything`,
      `/images/${kernel.sha256.slice(0, 7)}/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel`,
      '/bootx64.efi',
      '/grubx64.efi',
      '/lpxelinux.0',
      '/bootloaders/uefi/amd64/bootx64.efi',
    ];
    for (const path of same) {
      const [a, b] = [await get(direct + path), await get(front + path)];
      expect({ path, status: b.status }).toEqual({ path, status: 200 });
      expect({ path, sha: sha(b.body) }).toEqual({ path, sha: sha(a.body) });
    }
    const item = await get(front + PREFIX + kernel.path);
    expect(sha(item.body)).toBe(kernel.sha256);
    expect(item.headers['cache-control']).toContain('immutable');
    const meta = await get(`${front}${PREFIX}streams/v1/index.json`);
    expect(meta.headers['content-type']).toMatch(/^application\/json/);
    expect(meta.headers['cache-control']).toBe('no-cache');
    expect((await get(`${front}/keyring.gpg`)).headers['content-type']).toBe('application/pgp-keys');

    // nginx sent these bytes itself (its own validators), not a body relayed from maas-mirror.
    for (const path of [`/images/${kernel.sha256.slice(0, 7)}/x`, '/bootx64.efi', PREFIX + kernel.path]) {
      expect({ path, etag: (await get(front + path)).headers.etag }).toEqual({ path, etag: expect.stringMatching(/^"[0-9a-f]+-[0-9a-f]+"$/) });
    }
    expect((await get(direct + `/images/${kernel.sha256.slice(0, 7)}/x`)).headers.etag).toBe(`"${kernel.sha256}"`);
    // Range, through a hash route (redirected) and the tree (static).
    for (const path of [`/images/${kernel.sha256.slice(0, 9)}/x`, PREFIX + kernel.path]) {
      const part = await get(front + path, { range: 'bytes=10-19' });
      expect(part.status).toBe(206);
      expect(part.body.length).toBe(10);
    }
    // Routes with logic go to maas-mirror.
    expect((await get(`${front}/status.json`)).status).toBe(200);
    expect((await get(`${front}/metrics`)).body.toString()).toContain('maas_mirror_build_info');
    expect((await get(`${front}/readyz`)).status).toBe(200);
    expect((await get(`${front}/`)).headers['content-type']).toMatch(/^text\/html/);
    // What neither has is a 404 from maas-mirror; nothing outside the tree is reachable.
    for (const path of [`${PREFIX}streams/v1/nothing.json`, '/nothing', '/_maas_mirror_files/snapshots/', `${PREFIX}../../../../etc/passwd`, `${PREFIX}%2e%2e/%2e%2e/keys/signing-key.asc`, '/keys/signing-key.asc']) {
      const r = await get(front + path);
      expect({ path, status: r.status }).toEqual({ path, status: expect.toSatisfy((s: number) => s === 404 || s === 400) });
      expect(r.body.toString()).not.toContain('PRIVATE KEY');
    }
  });

  it('answers a trusted proxy that asks for it with X-Accel-Redirect into the snapshot by id, and nobody else', async () => {
    env = await makeEnv();
    const { daemon, direct } = await frontAndBack(env);
    const kernel = env.upstream.product(NOBLE).doc.products[NOBLE]!.versions['20250709']!.items['boot-kernel']!;
    const id = daemon.ops.coordinator.lastSync?.snapshot;
    const asked = await get(`${direct}/images/${kernel.sha256.slice(0, 8)}/x`, { [ACCEL_HEADER]: '/_maas_mirror_files/' });
    expect(asked.status).toBe(200);
    expect(asked.body.length).toBe(0);
    expect(asked.headers['x-accel-redirect']).toBe(`/_maas_mirror_files/snapshots/${id}/${kernel.path}`);
    const boot = await get(`${direct}/bootx64.efi`, { [ACCEL_HEADER]: '/_maas_mirror_files/' });
    expect(boot.headers['x-accel-redirect']).toMatch(/^\/_maas_mirror_files\/bootloaders\.d\/[^/]+\/uefi\/amd64\/bootx64\.efi$/);
    // A malformed prefix is ignored: the file itself comes back.
    const odd = await get(`${direct}/images/${kernel.sha256.slice(0, 8)}/x`, { [ACCEL_HEADER]: '/../etc/' });
    expect(odd.headers['x-accel-redirect']).toBeUndefined();
    expect(sha(odd.body)).toBe(kernel.sha256);
  });

  it('follows a publish: the tree and the redirected routes name the new snapshot at once', async () => {
    env = await makeEnv();
    const { daemon, front } = await frontAndBack(env);
    const products = `${front}${PREFIX}streams/v1/${env.upstream.product(NOBLE).contentId}.json`;
    const before = await get(products);
    expect(before.body.toString()).not.toContain('20991231');
    const first = daemon.ops.coordinator.lastSync?.snapshot;
    env.upstream.addVersion(NOBLE, '20991231');
    await env.upstream.write(new Date(Date.now() + 60_000));
    const record = await daemon.ops.coordinator.start('api').done;
    expect(record.snapshot).not.toBe(first);
    const after = await get(products);
    expect(after.body.toString()).toContain('20991231');
    const newKernel = env.upstream.product(NOBLE).doc.products[NOBLE]!.versions['20991231']!.items['boot-kernel']!;
    const byHash = await get(`${front}/images/${newKernel.sha256.slice(0, 10)}/x`);
    expect(byHash.status).toBe(200);
    expect(sha(byHash.body)).toBe(newKernel.sha256);
  });
});
