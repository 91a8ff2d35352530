import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { captureLogger } from '../http/fixture.js';
import { makeEnv, type Env } from '../helpers/env.js';

const run = promisify(execFile);
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const IMAGE = 'ubuntu/noble/amd64/ga-24.04/generic';
const PUBLIC = 'http://boot.example:8080';

let env: Env | undefined;
let daemon: Daemon | undefined;
afterEach(async () => {
  await daemon?.stop();
  await env?.close();
  env = daemon = undefined;
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function curl(url: string, ...args: string[]): Promise<{ status: number; body: string; headers: string }> {
  const { stdout } = await run('curl', ['-sS', '-D', '-', ...args, url], { maxBuffer: 64 * 1024 * 1024, encoding: 'latin1' });
  const split = stdout.indexOf('\r\n\r\n');
  const headers = stdout.slice(0, split);
  return { status: Number(/^HTTP\/[\d.]+ (\d{3})/.exec(headers)?.[1]), headers, body: stdout.slice(split + 4) };
}

function newestItem(e: Env, item: string): { sha256: string; path: string } {
  const versions = e.upstream.product(NOBLE).doc.products[NOBLE]!.versions;
  const newest = Object.keys(versions).sort().at(-1)!;
  return versions[newest]!.items[item]!;
}

describe('boot.files over HTTP (curl) and TFTP (tftp-hpa)', () => {
  it('serves files and rendered templates, follows a newer kernel, and never half-renders', async () => {
    env = await makeEnv();
    const boot = join(env.dir, 'boot');
    await mkdir(join(boot, 'pxelinux.cfg'), { recursive: true });
    await writeFile(join(boot, 'pxelinux.cfg', 'default.tmpl'), `KERNEL {{url:${IMAGE}/boot-kernel}}\nINITRD {{path:${IMAGE}/boot-initrd}}\n# {{server}}\n`);
    await writeFile(join(boot, 'boot.ipxe'), '#!ipxe\nchain pxelinux.0\n');
    await writeFile(join(boot, 'broken.cfg.tmpl'), `KERNEL {{url:${IMAGE}/boot-kernel}}\nINITRD {{url:ubuntu/plucky/amd64/ga-25.04/generic/boot-initrd}}\n`);
    await writeFile(join(env.dir, 'secret'), 'SECRET');
    await symlink(join(env.dir, 'secret'), join(boot, 'leak'));
    const config = env.config([{}], { boot: { files: boot }, http: { publicUrl: `${PUBLIC}/` }, schedule: { onStart: true, interval: '1h', jitter: '0s' } });
    const { logger, lines } = captureLogger('info');
    daemon = await startDaemon({ config, logger, httpListen: [{ host: '127.0.0.1', port: 0 }], tftpListen: [{ host: '127.0.0.1', port: 0 }], drainMs: 2000, retryBaseMs: 5 });
    const c = daemon.ops.coordinator;
    if (c.running) await once(c, 'end');
    const base = `http://127.0.0.1:${daemon.http.addresses[0]!.port}`;
    const tftp = daemon.tftpAddresses[0]!;
    const tftpGet = async (name: string) => {
      const out = join(env!.dir, 'tftp-out');
      // tftp-hpa may exit 0 after an ERROR packet; it says so in its output.
      const { stdout, stderr } = await run('tftp', [tftp.host, String(tftp.port), '-m', 'binary', '-c', 'get', name, out]).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? 'tftp failed' }));
      if (/Error code|failed/.test(stdout + stderr)) throw new Error(`${stdout}${stderr}`.trim());
      return readFile(out, 'utf8');
    };

    let kernel = newestItem(env, 'boot-kernel');
    const initrd = newestItem(env, 'boot-initrd');
    const want = (k: string) => `KERNEL ${PUBLIC}/images/${k}/boot-kernel\nINITRD /images/${initrd.sha256}/boot-initrd\n# ${PUBLIC}\n`;

    // HTTP: rendered, with the tree's validators; a conditional request gets 304.
    const cfg = await curl(`${base}/pxelinux.cfg/default`, '-H', 'Host: attacker.example');
    expect(cfg.status).toBe(200);
    expect(cfg.body).toBe(want(kernel.sha256));
    expect(cfg.headers).toMatch(/cache-control: no-cache/i);
    const etag = /etag: (".*")/i.exec(cfg.headers)![1]!;
    expect((await curl(`${base}/pxelinux.cfg/default`, '-H', `If-None-Match: ${etag}`)).status).toBe(304);
    // The rendered path fetches the kernel itself.
    const k = await run('curl', ['-fsS', `${base}/images/${kernel.sha256}/boot-kernel`], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
    expect(sha(k.stdout)).toBe(kernel.sha256);
    // TFTP: the same bytes; a plain file as it is.
    expect(await tftpGet('pxelinux.cfg/default')).toBe(want(kernel.sha256));
    expect(await tftpGet('boot.ipxe')).toBe('#!ipxe\nchain pxelinux.0\n');

    // Not served: the raw template, a link out of the folder, a template naming an image the mirror lacks.
    expect((await curl(`${base}/pxelinux.cfg/default.tmpl`)).status).toBe(404);
    expect((await curl(`${base}/leak`)).status).toBe(404);
    const broken = await curl(`${base}/broken.cfg`);
    expect(broken.status).toBe(404);
    expect(broken.body).not.toContain('KERNEL');
    await expect(tftpGet('broken.cfg')).rejects.toThrow(/Error code 1/);
    await expect(tftpGet('leak')).rejects.toThrow(/Error code 1/);
    expect(lines.some((l) => String(l.msg).includes('ubuntu/plucky/amd64/ga-25.04/generic/boot-initrd'))).toBe(true);

    // A sync publishes a newer kernel: the same config now names it, over both protocols.
    env.upstream.addVersion(NOBLE, '29991231');
    await env.upstream.write();
    expect((await c.start('test').done).result).toBe('ok');
    kernel = newestItem(env, 'boot-kernel');
    const next = await curl(`${base}/pxelinux.cfg/default`, '-H', `If-None-Match: ${etag}`);
    expect(next.status).toBe(200);
    expect(next.body).toContain(`/images/${kernel.sha256}/boot-kernel`);
    expect(await tftpGet('pxelinux.cfg/default')).toContain(`/images/${kernel.sha256}/boot-kernel`);
  });
});
