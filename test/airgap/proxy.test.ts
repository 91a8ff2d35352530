import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { cli, writeConfig } from './helpers.js';

let env: Env | undefined;
let proxy: ChildProcess | undefined;
afterEach(async () => {
  if (proxy && proxy.exitCode === null) {
    const gone = new Promise((r) => proxy!.once('exit', r));
    proxy.kill('SIGTERM');
    await gone;
  }
  proxy = undefined;
  await env?.close();
  env = undefined;
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Debian's tinyproxy in the foreground on a loopback port, with its own config and log. */
async function startTinyproxy(dir: string): Promise<{ url: string; log: () => Promise<string> }> {
  const port = await freePort();
  const logFile = join(dir, 'tinyproxy.log');
  const conf = join(dir, 'tinyproxy.conf');
  await writeFile(
    conf,
    [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 30', `LogFile "${logFile}"`, 'LogLevel Info', 'MaxClients 20', 'Allow 127.0.0.1', ''].join('\n'),
  );
  proxy = spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proxy.stderr!.on('data', (d) => (stderr += d));
  // Ready when it accepts a connection (bounded: 100 tries).
  for (let i = 0; !(await accepts(port)); i++) {
    if (i >= 100 || proxy.exitCode !== null) throw new Error(`tinyproxy did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url: `http://127.0.0.1:${port}`, log: () => readFile(logFile, 'utf8').catch(() => '') };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('proxies', () => {
  it('download.proxy: every upstream request goes through a real proxy; a dead proxy fails the sync', async () => {
    env = await makeEnv();
    const tp = await startTinyproxy(env.dir);
    const upstream = new URL(env.server.url);
    const viaProxy = env.config([{}], { download: { retries: 0, connectTimeout: '2s', idleTimeout: '5s', proxy: tp.url } });
    const r = await env.sync({ config: viaProxy });
    expect(r.failures).toEqual([]);
    expect(r.published).toBe(true);
    expect(await tp.log()).toContain(`${upstream.hostname}:${upstream.port}`);

    // Not vacuous: with the proxy's port closed, nothing reaches the upstream.
    const dead = `http://127.0.0.1:${await freePort()}`;
    const r2 = await env.sync({ config: env.config([{}], { download: { retries: 0, connectTimeout: '2s', idleTimeout: '2s', proxy: dead } }) });
    expect(r2.result).toBe('failed');
    expect(r2.failures[0]!.code).toBe('MM_UPSTREAM_NETWORK');
  });

  it('HTTP_PROXY in the environment of the CLI is honoured, and NO_PROXY bypasses it', async () => {
    env = await makeEnv();
    const tp = await startTinyproxy(env.dir);
    const upstream = new URL(env.server.url);
    const source = { name: 'stable', url: env.server.url, keyring: env.key.keyring };
    const viaEnv = await writeConfig(join(env.dir, 'a.yaml'), join(env.dir, 'a'), source);
    const noProxy = { NO_PROXY: '', no_proxy: '', HTTPS_PROXY: '', https_proxy: '', http_proxy: '' };
    const r = await cli(['sync', '--config', viaEnv], { ...noProxy, HTTP_PROXY: tp.url });
    expect(r.stdout + r.stderr).not.toMatch(/MM_/);
    expect(r.code).toBe(0);
    const seen = (await tp.log()).split(`${upstream.hostname}:${upstream.port}`).length - 1;
    expect(seen).toBeGreaterThan(0);

    const bypass = await writeConfig(join(env.dir, 'b.yaml'), join(env.dir, 'b'), source);
    const r2 = await cli(['sync', '--config', bypass], { ...noProxy, HTTP_PROXY: tp.url, NO_PROXY: '127.0.0.1' });
    expect(r2.code).toBe(0);
    expect((await tp.log()).split(`${upstream.hostname}:${upstream.port}`).length - 1).toBe(seen);
  });

  it('list goes through download.proxy too', async () => {
    env = await makeEnv();
    const tp = await startTinyproxy(env.dir);
    const upstream = new URL(env.server.url);
    const source = { name: 'stable', url: env.server.url, keyring: env.key.keyring };
    const noProxy = { NO_PROXY: '', no_proxy: '', HTTPS_PROXY: '', https_proxy: '', HTTP_PROXY: '', http_proxy: '' };
    const conf = await writeConfig(join(env.dir, 'l.yaml'), join(env.dir, 'l'), source, { download: { retries: 0, connectTimeout: '2s', idleTimeout: '5s', proxy: tp.url } });
    const r = await cli(['list', '--config', conf, '--json'], noProxy);
    expect(r.code, r.stderr).toBe(0);
    expect(await tp.log()).toContain(`${upstream.hostname}:${upstream.port}`);
  });
});
