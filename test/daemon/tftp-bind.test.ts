import { spawn, spawnSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { captureLogger } from '../http/fixture.js';
import { makeEnv, type Env } from '../helpers/env.js';

/**
 * Issue #4: when the TFTP port cannot be bound, the daemon logs one clear
 * line naming the fix and keeps serving HTTP.
 */

const BIN = join(import.meta.dirname, '../../bin/maas-mirror.js');

let env: Env | undefined;
let daemon: Daemon | undefined;
let blocker: Socket | undefined;
afterEach(async () => {
  await daemon?.stop();
  blocker?.close();
  await env?.close();
  env = daemon = blocker = undefined;
});

async function get(url: string): Promise<{ status: number; body: Buffer }> {
  const res = await request(url);
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

type Line = Record<string, unknown>;
const severe = (lines: Line[]) => lines.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal');

/**
 * A command prefix under which binding 127.0.0.1:69 fails with a real EACCES:
 * as root, drop CAP_NET_BIND_SERVICE from the bounding and inheritable sets
 * (exactly the capability the message tells operators to grant); as another
 * user, nothing is needed. Probed once; undefined when this host cannot do it.
 */
function withoutBindCapability(): string[] | undefined {
  const prefix =
    process.getuid?.() === 0 ? ['setpriv', '--bounding-set=-net_bind_service', '--inh-caps=-net_bind_service'] : [];
  const probe =
    "const s=require('dgram').createSocket('udp4');" +
    "s.on('error',e=>{process.stdout.write(String(e.code));process.exit(0)});" +
    "s.bind(69,'127.0.0.1',()=>{process.stdout.write('bound');s.close()});";
  const cmd = [...prefix, process.execPath, '-e', probe];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', timeout: 10_000 });
  return r.stdout === 'EACCES' ? prefix : undefined;
}
const noCap = withoutBindCapability();

describe('serve: TFTP port cannot be bound', () => {
  it.skipIf(noCap === undefined)(
    'EACCES on port 69 (no CAP_NET_BIND_SERVICE): one error line naming the fixes, HTTP keeps serving',
    async () => {
      env = await makeEnv();
      const file = join(env.dir, 'serve.yaml');
      await writeFile(
        file,
        JSON.stringify({
          dataDir: env.dataDir,
          sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }],
          http: { listen: '127.0.0.1:0' },
          tftp: { listen: '127.0.0.1:69' },
          schedule: { onStart: true },
        }),
      );
      const cmd = [...noCap!, process.execPath, BIN, 'serve', '--config', file];
      const p = spawn(cmd[0]!, cmd.slice(1), { env: { ...process.env, LOG_LEVEL: 'debug' } });
      const exited = once(p, 'exit');
      let out = '';
      let stderr = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (stderr += d));
      const lines = (): Line[] =>
        out
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as Line);
      const waitFor = async (pred: (l: Line) => boolean) => {
        for (let i = 0; i < 300 && !lines().some(pred) && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
        expect(lines().some(pred), `log so far:\n${out}\n${stderr}`).toBe(true);
      };
      try {
        await waitFor((l) => /^sync \S+ ended: ok$/.test(String(l.msg)));
        // Still running, and HTTP answers real requests.
        expect(p.exitCode).toBeNull();
        const listening = lines().find((l) => l.msg === 'HTTP server listening');
        const base = `http://${String(listening?.listen)}`;
        expect((await get(`${base}/livez`)).status).toBe(200);
        const efi = await get(`${base}/bootx64.efi`);
        expect(efi.status).toBe(200);
        expect(efi.body.length).toBeGreaterThan(0);

        // Exactly one line about it, an error, naming both fixes; nothing else severe.
        const about = lines().filter((l) => /CAP_NET_BIND_SERVICE|TFTP/.test(String(l.msg)) && l.level !== 'debug');
        expect(about).toHaveLength(1);
        expect(severe(lines())).toEqual(about);
        const [line] = about;
        expect(line).toMatchObject({ level: 'error', code: 'MM_TFTP_BIND' });
        expect(line!.msg).toContain('127.0.0.1:69');
        expect(line!.msg).toContain('permission denied');
        expect(line!.msg).toContain('run with CAP_NET_BIND_SERVICE');
        expect(line!.msg).toContain('set tftp.listen to a high port');
        expect(lines().some((l) => l.msg === 'TFTP server listening')).toBe(false);
      } finally {
        if (p.exitCode === null) p.kill('SIGTERM');
      }
      const [code] = await exited;
      expect(code).toBe(0);
    },
  );

  it('EADDRINUSE (another TFTP server holds the port): one error line naming the fix, HTTP keeps serving', async () => {
    env = await makeEnv();
    // Another server already has the port.
    blocker = createSocket('udp4');
    await new Promise<void>((resolve) => blocker!.bind({ address: '127.0.0.1', port: 0 }, resolve));
    const port = blocker.address().port;
    const { logger, lines } = captureLogger('debug');
    daemon = await startDaemon({
      config: env.config([{}], { schedule: { onStart: true, interval: '1h', jitter: '0s' } }),
      logger,
      httpListen: [{ host: '127.0.0.1', port: 0 }],
      tftpListen: [{ host: '127.0.0.1', port }],
      drainMs: 2000,
      retryBaseMs: 5,
    });
    expect(daemon.tftp).toBeUndefined();
    expect(daemon.tftpAddresses).toEqual([]);

    const c = daemon.ops.coordinator;
    const record = c.running ? (await once(c, 'end'))[0] : c.lastSync;
    expect(record.result).toBe('ok');
    const base = `http://127.0.0.1:${daemon.http.addresses[0]!.port}`;
    expect((await get(`${base}/livez`)).status).toBe(200);
    const efi = await get(`${base}/bootx64.efi`);
    expect(efi.status).toBe(200);
    expect(efi.body.length).toBeGreaterThan(0);

    const about = lines.filter((l) => /TFTP/.test(String(l.msg)) && l.level !== 'debug');
    expect(about).toHaveLength(1);
    expect(severe(lines)).toEqual(about);
    const [line] = about;
    expect(line).toMatchObject({ level: 'error', code: 'MM_TFTP_BIND' });
    expect(line!.msg).toContain(`127.0.0.1:${port}`);
    expect(line!.msg).toContain('already in use');
    expect(line!.msg).toContain('set tftp.listen to another address or port');
    // The daemon did not take the port from its owner.
    expect(blocker.address().port).toBe(port);
  });
});
