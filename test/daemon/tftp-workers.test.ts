import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { tftpGet } from '../../src/tftp/client.js';
import { captureLogger } from '../http/fixture.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { sample } from '../ops/helpers.js';

const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const IMAGE = 'ubuntu/noble/amd64/ga-24.04/generic';

let env: Env | undefined;
let daemon: Daemon | undefined;
afterEach(async () => {
  await daemon?.stop();
  await env?.close();
  env = daemon = undefined;
});

function newestKernel(e: Env): string {
  const versions = e.upstream.product(NOBLE).doc.products[NOBLE]!.versions;
  return versions[Object.keys(versions).sort().at(-1)!]!.items['boot-kernel']!.sha256;
}

async function bootDir(dir: string, hello: string): Promise<string> {
  await mkdir(join(dir, 'pxelinux.cfg'), { recursive: true });
  await writeFile(join(dir, 'pxelinux.cfg', 'default.tmpl'), `KERNEL {{path:${IMAGE}/boot-kernel}}\n`);
  await writeFile(join(dir, 'hello.cfg'), hello);
  return dir;
}

describe('the daemon with tftp.workers: 2', () => {
  it('serves from worker threads that follow a publish and a reloaded boot.files, with one view of metrics and logs', async () => {
    env = await makeEnv();
    const first = await bootDir(join(env.dir, 'boot-a'), 'A\n');
    const second = await bootDir(join(env.dir, 'boot-b'), 'B\n');
    const extra = { tftp: { workers: 2 }, schedule: { onStart: true, interval: '1h', jitter: '0s' } };
    const config = env.config([{}], { ...extra, boot: { files: first } });
    const { logger, lines } = captureLogger('info');
    daemon = await startDaemon({ config, logger, httpListen: [{ host: '127.0.0.1', port: 0 }], tftpListen: [{ host: '127.0.0.1', port: 0 }], drainMs: 2000, retryBaseMs: 5 });
    const c = daemon.ops.coordinator;
    if (c.running) await once(c, 'end');
    const tftp = daemon.tftpAddresses[0]!;
    let ok = 0;
    const get = async (file: string) => {
      const r = await tftpGet({ host: tftp.host, port: tftp.port, file, blksize: 1468 });
      ok++;
      return r;
    };
    const text = async (file: string) => {
      const chunks: Buffer[] = [];
      await tftpGet({ host: tftp.host, port: tftp.port, file, onData: (d) => chunks.push(Buffer.from(d)) });
      ok++;
      return Buffer.concat(chunks).toString();
    };

    let kernel = newestKernel(env);
    expect(await text('pxelinux.cfg/default')).toBe(`KERNEL /images/${kernel}/boot-kernel\n`);
    expect((await get(`images/${kernel}/boot-kernel`)).sha256).toBe(kernel);

    // Publish a newer kernel while requests keep the workers' caches warm: the first request
    // after the publish already sees it (the workers were told, not left to their cache's expiry).
    env.upstream.addVersion(NOBLE, '29991231');
    await env.upstream.write();
    let warm = true;
    const warming = (async () => {
      while (warm) {
        await text('pxelinux.cfg/default').catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    expect((await c.start('test').done).result).toBe('ok');
    const after = await text('pxelinux.cfg/default');
    warm = false;
    await warming;
    kernel = newestKernel(env);
    expect(after).toBe(`KERNEL /images/${kernel}/boot-kernel\n`);
    expect((await get(`images/${kernel}/boot-kernel`)).sha256).toBe(kernel);

    // SIGHUP with another boot.files folder: the workers serve from it.
    expect(await text('hello.cfg')).toBe('A\n');
    const file = join(env.dir, 'reload.json');
    const doc = { dataDir: env.dataDir, sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }], ...extra, boot: { files: second } };
    await writeFile(file, JSON.stringify(doc));
    expect(daemon.reload(file)).toBe(true);
    expect(await text('hello.cfg')).toBe('B\n');

    // One view: every transfer counted once by the main thread, every done line with its worker.
    // A client is done once it has sent its last ACK; the server counts the transfer when that ACK
    // has reached the worker and come back, a moment later: wait for that moment, not longer.
    const counted = async () =>
      sample(await (await request(`http://127.0.0.1:${daemon!.http.addresses[0]!.port}/metrics`)).body.text(), 'maas_mirror_tftp_transfers_total', { result: 'ok' });
    let n = (await counted()) ?? 0;
    for (const until = Date.now() + 5000; n < ok && Date.now() < until; n = (await counted()) ?? 0) await new Promise((r) => setTimeout(r, 50));
    expect(n).toBe(ok);
    const done = lines.filter((l) => l.msg === 'TFTP transfer done');
    expect(done).toHaveLength(ok);
    expect(done.every((l) => l.component === 'tftp' && (l.worker === 0 || l.worker === 1))).toBe(true);
    expect(new Set(done.map((l) => l.worker)).size).toBe(2);
  });
});
