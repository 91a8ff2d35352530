import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cliEnv, spawnCli, writeJsonConfig } from '../faults/helpers.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { rawHttp } from '../helpers/raw-http.js';

/**
 * `maas-mirror serve` with http.workers: 2, the real CLI: two worker
 * processes answer HTTP, the primary owns syncs, API, metrics and the
 * pull-through downloads. Every request below opens its own connection, so
 * the cluster hands them to the workers in turn.
 */

const run = promisify(execFile);
const PREFIX = '/maas/images/ephemeral-v3/stable/';
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const TOKEN = 'workers-test-token-0123456789';
const SIZE = 4 << 20;
const INDEX = `${PREFIX}streams/v1/index.sjson`;

interface Line {
  msg: string;
  worker?: number;
  pid?: number;
  path?: string;
  status?: number;
  [k: string]: unknown;
}

let env: Env;
let serve: ReturnType<typeof spawnCli>;
let base = '';
let file = '';
let bootA = '';
let bootB = '';

const lines = (): Line[] =>
  serve
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

async function waitFor(what: string, pred: (ls: Line[]) => boolean, ms = 60_000): Promise<Line[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ls = lines();
    if (pred(ls)) return ls;
    if (Date.now() > deadline || serve.exitCode !== null) throw new Error(`no ${what} in the log:\n${serve.output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One request on a connection of its own. */
function fetchOnce(path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { agent: false, method: init.method ?? 'GET', headers: init.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Workers that logged an access line for `path` after log line `from`. */
function workersThatServed(path: string, from: number): Set<number> {
  return new Set(
    lines()
      .slice(from)
      .filter((l) => l.msg === 'request' && l.path === path && typeof l.worker === 'number')
      .map((l) => l.worker!),
  );
}

function servingPids(): Map<number, number> {
  const pids = new Map<number, number>();
  for (const l of lines()) if (l.msg === 'HTTP worker serving') pids.set(l.worker!, l.pid!);
  for (const l of lines()) if (l.msg === 'HTTP worker stopped' || /exited unexpectedly/.test(l.msg)) if (pids.get(l.worker!) === l.pid) pids.delete(l.worker!);
  return pids;
}

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const writeConfig = (boot: string) =>
  writeJsonConfig(file, {
    dataDir: env.dataDir,
    sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring, onDemand: true, filters: [['os=ubuntu', 'arch=amd64']] }],
    http: { listen: '127.0.0.1:0', workers: 2 },
    tftp: { enabled: false },
    boot: { files: boot },
    api: { token: TOKEN },
    schedule: { onStart: true, interval: '6h', jitter: '0s' },
  });

beforeAll(async () => {
  env = await makeEnv({ sizeOf: (ftype) => (ftype === 'squashfs' ? SIZE : 32 * 1024) });
  bootA = join(env.dir, 'boot-a');
  bootB = join(env.dir, 'boot-b');
  await mkdir(bootA);
  await mkdir(bootB);
  await writeFile(join(bootA, 'hello.cfg'), 'from A\n');
  await writeFile(join(bootB, 'hello.cfg'), 'from B\n');
  file = join(env.dir, 'serve.yaml');
  await writeConfig(bootA);
  serve = spawnCli(['serve', '--config', file], cliEnv({ LOG_LEVEL: 'info' }));
  await waitFor('two serving workers and a published snapshot', (ls) => servingPids().size === 2 && ls.some((l) => /^sync \S+ ended: ok$/.test(l.msg)));
  const listen = lines().find((l) => l.msg === 'HTTP server listening')!.listen as string;
  base = `http://${listen}`;
}, 120_000);

afterAll(async () => {
  if (serve?.exitCode === null) {
    serve.kill('SIGKILL');
    await serve.exited;
  }
  await env?.close();
});

describe('serve with http.workers: 2', () => {
  it('answers from both workers, and /metrics counts every request of every worker once', async () => {
    const from = lines().length;
    const n = 24;
    for (let i = 0; i < n; i++) expect((await fetchOnce(INDEX)).status).toBe(200);
    expect(workersThatServed(INDEX, from)).toEqual(new Set([1, 2]));
    // Every tree GET so far (only those above: the sync reads the upstream, not us).
    const text = (await fetchOnce('/metrics')).body.toString();
    expect(metric(text, 'maas_mirror_http_request_duration_seconds_count{route="tree",method="GET",status="200"}')).toBe(n);
    // The primary's own metrics, once: a sum over processes would double them.
    expect(metric(text, 'maas_mirror_sync_runs_total{source="stable",result="ok"}')).toBe(1);
    expect(text).toMatch(/^maas_mirror_build_info\{version="[^"]+"\} 1$/m);
    expect(text).toMatch(/^process_start_time_seconds \d+$/m);
    // A valid exposition: each metric described once.
    const types = text.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(new Set(types).size).toBe(types.length);
    const promtool = await new Promise<string>((resolve) => {
      const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) => resolve(`${err ? `exit ${String((err as { code?: number }).code)} ` : ''}${stdout}${stderr}`));
      child.stdin!.end(text);
    });
    expect(promtool).toBe('');
    // Forwarded answers keep their auth and status codes.
    expect((await fetchOnce('/api/v1/status')).status).toBe(401);
    const status = await fetchOnce('/api/v1/status', { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(status.status).toBe(200);
    expect(JSON.parse(status.body.toString()).httpWorkers).toEqual({ configured: 2, running: 2 });
    expect((await fetchOnce('/')).body.toString()).toContain('HTTP workers 2 of 2');
    // A forwarded answer carries the worker's own connection headers once, and the primary's others.
    const { stdout: head } = await run('curl', ['-sS', '-o', '/dev/null', '-D', '-', `${base}/status.json`]);
    const names = head.split('\r\n').slice(1).filter(Boolean).map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
    for (const n of ['date', 'connection', 'keep-alive', 'content-type', 'content-length', 'cache-control']) expect(names.filter((x) => x === n), n).toHaveLength(1);
    const again = (await fetchOnce('/metrics')).body.toString();
    expect(metric(again, 'maas_mirror_http_request_duration_seconds_count{route="api",method="GET",status="401"}')).toBe(1);
    expect(metric(again, 'maas_mirror_http_request_duration_seconds_count{route="metrics",method="GET",status="200"}')).toBe(1);
    // "/" and "/status.json".
    expect(metric(again, 'maas_mirror_http_request_duration_seconds_count{route="status",method="GET",status="200"}')).toBe(2);
  }, 60_000);

  it('after a publish, every worker serves the new index', async () => {
    const before = (await fetchOnce(INDEX)).body;
    env.upstream.addVersion(NOBLE, '20250801');
    await env.upstream.write(new Date(Date.now() + 60_000));
    const synced = lines().filter((l) => /^sync \S+ ended: ok$/.test(l.msg)).length;
    const started = await fetchOnce('/api/v1/sync', { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(started.status).toBe(202);
    await waitFor('the second sync', (ls) => ls.filter((l) => /^sync \S+ ended: ok$/.test(l.msg)).length > synced);
    const from = lines().length;
    const bodies = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const r = await fetchOnce(INDEX);
      expect(r.status).toBe(200);
      bodies.add(r.body.toString());
    }
    expect(workersThatServed(INDEX, from)).toEqual(new Set([1, 2]));
    expect(bodies.size).toBe(1);
    expect(bodies.has(before.toString())).toBe(false);
  }, 120_000);

  it('streams an image upload through a worker to the primary; every worker then serves it', async () => {
    const root = join(env.dir, 'root-ol');
    await mkdir(root);
    await writeFile(join(root, 'payload'), randomBytes(3 << 20));
    const tarball = join(env.dir, 'ol.tar.gz');
    await run('tar', ['-czf', tarball, '-C', root, '.']);
    const res = await request(`${base}/api/v1/images?os=ol&release=9&arch=amd64`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/gzip' },
      body: createReadStream(tarball),
    });
    const json = (await res.body.json()) as { image: { path: string; sha256: string } };
    expect(res.statusCode, JSON.stringify(json)).toBe(201);
    const original = await readFile(tarball);
    expect(json.image.sha256).toBe(createHash('sha256').update(original).digest('hex'));
    const from = lines().length;
    for (let i = 0; i < 8; i++) {
      const r = await fetchOnce(`${PREFIX}${json.image.path}`);
      expect(r.status).toBe(200);
      expect(r.body.equals(original)).toBe(true);
    }
    expect(workersThatServed(`${PREFIX}${json.image.path}`, from)).toEqual(new Set([1, 2]));
  }, 120_000);

  it('SIGHUP reaches every worker before they answer again', async () => {
    expect((await fetchOnce('/hello.cfg')).body.toString()).toBe('from A\n');
    await writeConfig(bootB);
    serve.kill('SIGHUP');
    await waitFor('the reload', (ls) => ls.some((l) => l.msg === 'configuration reloaded in the HTTP workers'));
    const from = lines().length;
    for (let i = 0; i < 12; i++) expect((await fetchOnce('/hello.cfg')).body.toString()).toBe('from B\n');
    expect(workersThatServed('/hello.cfg', from)).toEqual(new Set([1, 2]));
  }, 60_000);

  it('re-frames a chunked body on the way to the primary: bytes in it are never a request of their own there', async () => {
    const from = lines().length;
    const { hostname, port } = new URL(base);
    const smuggled = `POST /api/v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 0\r\n\r\n`;
    const body = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
    const head = `GET /status.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}`;
    // Several, so that every worker and several of its kept-alive connections to the primary carry one.
    const answers = await Promise.all(Array.from({ length: 6 }, () => rawHttp({ host: hostname, port: Number(port) }, head)));
    for (const a of answers) expect(a.status).toBe(200);
    // Followed by ordinary requests on the same kept-alive connections: each gets its own answer.
    for (let i = 0; i < 6; i++) expect((await fetchOnce('/status.json')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1000));
    expect(lines().slice(from).filter((l) => /started \(api\)/.test(l.msg))).toEqual([]);
  });

  it('replaces a worker that dies, and its counts stay in /metrics (a counter never goes down)', async () => {
    const TREE_OK = 'maas_mirror_http_request_duration_seconds_count{route="tree",method="GET",status="200"}';
    const treeOk = async () => metric((await fetchOnce('/metrics')).body.toString(), TREE_OK) ?? 0;
    for (let i = 0; i < 8; i++) expect((await fetchOnce(INDEX)).status).toBe(200);
    const before = await treeOk();
    const [id, pid] = [...servingPids()][0]!;
    process.kill(pid, 'SIGKILL');
    await waitFor('the respawn', () => servingPids().size === 2 && !([...servingPids().values()].includes(pid)));
    expect(lines().some((l) => l.worker === id && l.pid === pid && /exited unexpectedly/.test(l.msg))).toBe(true);
    const from = lines().length;
    for (let i = 0; i < 12; i++) expect((await fetchOnce(INDEX)).status).toBe(200);
    expect(workersThatServed(INDEX, from).size).toBe(2);
    expect(await treeOk()).toBe(before + 12);
  }, 60_000);

  it('drains on SIGTERM: a pull-through download in flight finishes, then it exits 0', async () => {
    const item = env.upstream.product(NOBLE).doc.products[NOBLE]!.versions['20250801']!.items.squashfs!;
    expect(item.size).toBe(SIZE);
    env.server.throttle = 1 << 20;
    const out = join(env.dir, 'pulled');
    const curl = run('curl', ['-sS', '-f', '-o', out, '-w', '%{http_code} %{size_download}', `${base}${PREFIX}${item.path}`]);
    // Under way: the primary has started the upstream download.
    await new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        if (env.server.log.some((l) => l.path.endsWith(item.path))) {
          clearInterval(poll);
          resolve();
        }
      }, 50);
      setTimeout(() => {
        clearInterval(poll);
        reject(new Error('the pull-through download never started'));
      }, 20_000);
    });
    await new Promise((r) => setTimeout(r, 500));
    serve.kill('SIGTERM');
    const { stdout } = await curl;
    expect(stdout).toBe(`200 ${SIZE}`);
    expect(createHash('sha256').update(await readFile(out)).digest('hex')).toBe(item.sha256);
    expect(await serve.exited).toBe(0);
    expect(lines().filter((l) => l.msg === 'HTTP worker stopped').length).toBeGreaterThanOrEqual(2);
    expect(lines().at(-1)?.msg).toBe('stopped');
    // One stream: every line whole.
    expect(serve.output().split('\n').filter((l) => l !== '' && !l.startsWith('{'))).toEqual([]);
  }, 120_000);
});

describe('serve with http.workers: 2 on a port in use', () => {
  it('stops with the listen error, as one process would', async () => {
    const e = await makeEnv();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    onTestFinished(async () => {
      await new Promise((r) => blocker.close(r));
      await e.close();
    });
    const port = (blocker.address() as AddressInfo).port;
    const config = await writeJsonConfig(join(e.dir, 'serve.yaml'), {
      dataDir: e.dataDir,
      sources: [{ name: 'stable', url: e.server.url, keyring: e.key.keyring }],
      http: { listen: `127.0.0.1:${port}`, workers: 2 },
      tftp: { enabled: false },
      schedule: { onStart: false },
    });
    const p = spawnCli(['serve', '--config', config], cliEnv({ LOG_LEVEL: 'info' }));
    onTestFinished(() => {
      if (p.exitCode === null) p.kill('SIGKILL');
    });
    expect(await p.exited).toBe(1);
    expect(p.output()).toContain(`maas-mirror: cannot listen on 127.0.0.1:${port}: EADDRINUSE`);
    expect(p.output()).toContain('"code":"MM_HTTP_LISTEN"');
  }, 60_000);
});
