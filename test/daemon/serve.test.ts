import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { makeEnv, type Env } from '../helpers/env.js';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '../../bin/maas-mirror.js');
const PREFIX = '/maas/images/ephemeral-v3/stable/';
const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

let env: Env | undefined;
let daemon: Daemon | undefined;
afterEach(async () => {
  await daemon?.stop();
  await env?.close();
  env = daemon = undefined;
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function get(url: string): Promise<{ status: number; body: Buffer }> {
  const res = await request(url);
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

async function startOnLoopback(e: Env, extra: Record<string, unknown> = {}): Promise<{ daemon: Daemon; base: string }> {
  const config = e.config([{}], { schedule: { onStart: true, interval: '1h', jitter: '0s' }, ...extra });
  const d = await startDaemon({
    config,
    logger: silentLogger(),
    httpListen: [{ host: '127.0.0.1', port: 0 }],
    tftpListen: [{ host: '127.0.0.1', port: 0 }],
    drainMs: 2000,
    retryBaseMs: 5,
  });
  return { daemon: d, base: `http://127.0.0.1:${d.http.addresses[0]!.port}` };
}

async function firstSync(d: Daemon) {
  const c = d.ops.coordinator;
  if (c.running) return (await once(c, 'end'))[0];
  return c.lastSync;
}

describe('serve: the daemon', () => {
  it('syncs at start, then serves the tree, the rack names and bootloaders over HTTP and TFTP', async () => {
    env = await makeEnv();
    const started = await startOnLoopback(env);
    daemon = started.daemon;
    const record = await firstSync(daemon);
    expect(record.result).toBe('ok');

    const index = await get(`${started.base}${PREFIX}streams/v1/index.sjson`);
    expect(index.status).toBe(200);
    expect(index.body.toString()).toContain('BEGIN PGP SIGNED MESSAGE');

    const { doc } = env.upstream.product(NOBLE_AMD64);
    const kernel = doc.products[NOBLE_AMD64]!.versions['20250709']!.items['boot-kernel']!;
    const byHash = await get(`${started.base}/images/${kernel.sha256.slice(0, 10)}/ubuntu/amd64/ga-24.04/noble/stable/boot-kernel`);
    expect(byHash.status).toBe(200);
    expect(sha(byHash.body)).toBe(kernel.sha256);

    const efi = await get(`${started.base}/bootx64.efi`);
    expect(efi.status).toBe(200);

    // TFTP: the same names, with the real tftp-hpa client.
    const tftp = daemon.tftpAddresses[0]!;
    const out = join(env.dir, 'tftp-out');
    await run('tftp', [tftp.host, String(tftp.port), '-m', 'binary', '-c', 'get', 'bootx64.efi', out]);
    expect(sha(await readFile(out))).toBe(sha(efi.body));
    await run('tftp', [tftp.host, String(tftp.port), '-m', 'binary', '-c', 'get', kernel.path, out]);
    expect(sha(await readFile(out))).toBe(kernel.sha256);

    // tftp exits once it has sent its last ACK; the server counts the transfer when that ACK is in.
    let metrics = (await get(`${started.base}/metrics`)).body.toString();
    for (const until = Date.now() + 5000; !/maas_mirror_tftp_transfers_total\{result="ok"\} 2/.test(metrics) && Date.now() < until; ) {
      await new Promise((r) => setTimeout(r, 50));
      metrics = (await get(`${started.base}/metrics`)).body.toString();
    }
    expect(metrics).toMatch(/maas_mirror_sync_runs_total\{source="stable",result="ok"\} 1/);
    expect(metrics).toMatch(/maas_mirror_tftp_transfers_total\{result="ok"\} 2/);
  });

  it('keeps serving the last good snapshot when the upstream is down', async () => {
    env = await makeEnv();
    const started = await startOnLoopback(env);
    daemon = started.daemon;
    await firstSync(daemon);
    await env.server.stop();
    const { done } = daemon.ops.coordinator.start('test');
    const record = await done;
    expect(record.result).toBe('failed');
    expect((await get(`${started.base}${PREFIX}streams/v1/index.json`)).status).toBe(200);
    expect((await get(`${started.base}/readyz`)).status).toBe(200);
  });

  it('reloads a good configuration and keeps the old one when the new one is invalid', async () => {
    env = await makeEnv();
    const started = await startOnLoopback(env);
    daemon = started.daemon;
    await firstSync(daemon);
    const file = join(env.dir, 'reload.yaml');
    await writeFile(file, JSON.stringify({ dataDir: env.dataDir, sources: [{ name: 'renamed', url: env.server.url, keyring: env.key.keyring }] }));
    expect(daemon.reload(file)).toBe(true);
    expect(daemon.config().sources[0]!.name).toBe('renamed');
    await writeFile(file, 'dataDir: [broken');
    expect(daemon.reload(file)).toBe(false);
    expect(daemon.config().sources[0]!.name).toBe('renamed');
  });

  it('on shutdown aborts a running sync, keeping its partial files for the next one', async () => {
    env = await makeEnv({ sizeOf: (ftype) => (ftype === 'squashfs' ? 4 << 20 : 32 * 1024) });
    env.server.throttle = 512 * 1024;
    const started = await startOnLoopback(env);
    daemon = started.daemon;
    // Wait until downloads are under way.
    for (let i = 0; i < 100 && (daemon.ops.coordinator.running?.progress.bytesDone ?? 0) < 100_000; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const ended = once(daemon.ops.coordinator, 'end');
    await daemon.stop();
    const [record] = await ended;
    expect(record.result).toBe('aborted');
    const partials = await readdir(join(env.dataDir, 'partial'));
    expect(partials.length).toBeGreaterThan(0);
    daemon = undefined;
    // The next sync resumes them with Range.
    env.server.throttle = 0;
    const r = await env.sync();
    expect(r.result).toBe('ok');
    expect(env.server.log.some((l) => l.range !== undefined && l.status === 206)).toBe(true);
  });
});

describe('serve: the process', () => {
  it('answers SIGHUP with a bad config by keeping the old one, and exits 0 on SIGTERM', async () => {
    env = await makeEnv();
    const file = join(env.dir, 'serve.yaml');
    const write = (text: string) => writeFile(file, text);
    await write(
      JSON.stringify({
        dataDir: env.dataDir,
        sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }],
        http: { listen: '127.0.0.1:0' },
        tftp: { enabled: false },
        schedule: { onStart: true },
      }),
    );
    const p = spawn(process.execPath, [BIN, 'serve', '--config', file], { env: { ...process.env, LOG_LEVEL: 'info' } });
    let log = '';
    p.stdout.on('data', (d) => (log += d));
    p.stderr.on('data', (d) => (log += d));
    const waitFor = async (re: RegExp) => {
      for (let i = 0; i < 600 && !re.test(log); i++) await new Promise((r) => setTimeout(r, 50));
      expect(log).toMatch(re);
    };
    await waitFor(/published a new snapshot/);
    await write('sources: {');
    p.kill('SIGHUP');
    await waitFor(/new configuration is invalid, keeping the old one/);
    p.kill('SIGTERM');
    const [code] = await once(p, 'exit');
    expect(code).toBe(0);
    expect(log).toMatch(/"msg":"stopped"/);
  });
});
