import { readdir, readFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { cliEnv, sleep, spawnCli, waitFor, writeJsonConfig } from './helpers.js';

/**
 * Clients that ask for a large file and never read it. Each costs the daemon
 * its kernel socket buffer plus a bounded amount of memory (64 KiB of
 * chunks), and only for http.sendTimeout: then the response is destroyed.
 * http.maxConnections caps how many connections are open at once. The daemon
 * runs as its own process, so its RSS and open descriptors are its own.
 */

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const MiB = 1 << 20;
const SEND_TIMEOUT_S = 5;

let env: Env | undefined;

/** A world for one test, closed when that test ends (each test makes its own). */
async function world(options: Parameters<typeof makeEnv>[0]): Promise<Env> {
  const made = await makeEnv(options);
  onTestFinished(() => made.close());
  env = made;
  return made;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

const fds = async (pid: number) => (await readdir(`/proc/${pid}/fd`)).length;

async function serve(extra: Record<string, unknown>): Promise<{ base: string; pid: number; port: number }> {
  const port = await freePort();
  const file = await writeJsonConfig(join(env!.dir, `serve-${port}.json`), {
    dataDir: env!.dataDir,
    sources: [{ name: 'stable', url: env!.server.url, keyring: env!.key.keyring }],
    // One serving process: its memory, descriptors and connection cap are what is measured.
    http: { listen: `127.0.0.1:${port}`, workers: 1, ...extra },
    tftp: { enabled: false },
    schedule: { onStart: false, interval: '1h', jitter: '0s' },
  });
  const child = spawnCli(['serve', '--config', file], cliEnv({ LOG_LEVEL: 'warn' }));
  onTestFinished(async () => {
    child.kill('SIGKILL');
    await child.exited;
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      try {
        const r = await request(`${base}/livez`, { reset: true });
        await r.body.dump();
        return r.statusCode === 200;
      } catch {
        return false;
      }
    },
    30_000,
    `the daemon to listen (${child.output()})`,
  );
  return { base, pid: child.pid!, port };
}

/**
 * A client that sends a GET and then never reads: its socket is paused from
 * the start. (Being paused, it would not notice the server closing; the
 * daemon's descriptors show that.)
 */
function nonReader(port: number, path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => {
      s.pause();
      s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      resolve(s);
    });
    s.once('error', reject);
    s.on('error', () => undefined);
  });
}

describe('clients that never read', () => {
  it('300 of them cost bounded memory and are dropped after http.sendTimeout', { timeout: 180_000 }, async () => {
    env = await world({ sizeOf: (ftype) => (ftype === 'squashfs' ? 48 * MiB : 64 * 1024), samples: ['stable-v3-download.json'] });
    expect((await env.sync({ config: env.config([{ filters: [['os=ubuntu', 'arch=amd64']] }]) })).result).toBe('ok');
    const item = env.upstream.product(NOBLE_AMD64).doc.products[NOBLE_AMD64]!.versions['20250709']!.items.squashfs!;
    const { base, pid, port } = await serve({ sendTimeout: `${SEND_TIMEOUT_S}s` });
    const warm = await request(`${base}${PREFIX}${item.path}`, { headers: { range: 'bytes=0-1023' }, reset: true });
    await warm.body.dump();
    expect(warm.statusCode).toBe(206);
    const before = { rss: await rssMiB(pid), fds: await fds(pid) };

    const sockets: Socket[] = [];
    onTestFinished(() => sockets.forEach((s) => s.destroy()));
    for (let i = 0; i < 300; i++) sockets.push(await nonReader(port, `${PREFIX}${item.path}`));
    // Every connection is accepted and holds its file open; then every response has filled its socket buffers and stalled.
    await waitFor(async () => (await fds(pid)) >= before.fds + 300, 30_000, 'the daemon to accept 300 connections');
    await sleep(1000);
    const peak = { rss: await rssMiB(pid), fds: await fds(pid) };

    // A normal client is still served meanwhile.
    const normal = await request(`${base}${PREFIX}streams/v1/index.json`, { reset: true });
    await normal.body.dump();
    expect(normal.statusCode).toBe(200);

    const t0 = Date.now();
    await waitFor(async () => (await fds(pid)) <= before.fds + 5, 60_000, `the daemon to drop ${sockets.length} non-reading clients`);
    const droppedAfter = Date.now() - t0;
    const after = { rss: await rssMiB(pid), fds: await fds(pid) };
    console.log(
      `non-reading clients: RSS ${before.rss.toFixed(0)} → ${peak.rss.toFixed(0)} MiB with 300 open (${(((peak.rss - before.rss) * 1024) / 300).toFixed(0)} KiB each), ` +
        `${after.rss.toFixed(0)} MiB after; fds ${before.fds} → ${peak.fds} → ${after.fds}; all dropped ${droppedAfter} ms after the peak (sendTimeout ${SEND_TIMEOUT_S} s)`,
    );
    // About 64 KiB of chunks per response, plus socket and request bookkeeping: far from the ~1 MB each of 512 KiB chunks.
    expect(peak.rss - before.rss).toBeLessThan(150);
  });

  it('closes connections beyond http.maxConnections as they arrive', { timeout: 120_000 }, async () => {
    env = await world({ samples: ['stable-v3-download.json'] });
    expect((await env.sync({ config: env.config([{}]) })).result).toBe('ok');
    const { base, port } = await serve({ maxConnections: 20 });
    const closed = { n: 0 };
    const held: Socket[] = [];
    onTestFinished(() => held.forEach((s) => s.destroy()));
    // 20 connections held open by requests still being sent.
    for (let i = 0; i < 20; i++) {
      held.push(
        await new Promise<Socket>((resolve) => {
          const s = connect({ port, host: '127.0.0.1' }, () => {
            s.write(`GET ${PREFIX}streams/v1/index.json HTTP/1.1\r\nHost: x\r\nX-Slow: `);
            resolve(s);
          });
          s.on('error', () => undefined);
          s.on('close', () => closed.n++);
        }),
      );
    }
    await sleep(300);
    expect(closed.n).toBe(0);
    // The 21st is closed by the server without an answer.
    const extra = await new Promise<{ data: number }>((resolve) => {
      let data = 0;
      const s = connect({ port, host: '127.0.0.1' }, () => s.write(`GET ${PREFIX}streams/v1/index.json HTTP/1.1\r\nHost: x\r\n\r\n`));
      s.on('data', (d: Buffer) => (data += d.length));
      s.on('error', () => undefined);
      s.on('close', () => resolve({ data }));
      setTimeout(() => s.destroy(), 10_000).unref();
    });
    expect(extra.data).toBe(0);
    // Once they go, new clients are served.
    held.forEach((s) => s.destroy());
    await waitFor(
      async () => {
        try {
          const r = await request(`${base}${PREFIX}streams/v1/index.json`, { reset: true });
          await r.body.dump();
          return r.statusCode === 200;
        } catch {
          return false;
        }
      },
      10_000,
      'a new client to be served',
    );
  });
});
