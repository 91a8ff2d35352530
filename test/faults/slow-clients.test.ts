import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { waitFor } from './helpers.js';

/**
 * Slow clients holding connections (slowloris): 300 sockets that send part
 * of a request line and then nothing, and 20 that send nothing at all. The
 * daemon must keep answering normal requests at once, and must close the
 * held sockets in the end: its HTTP servers have bounded header timeouts, and a
 * bound on the whole request that the server enforces on every request.
 */

const PREFIX = '/maas/images/ephemeral-v3/stable/';

let env: Env | undefined;
let daemon: Daemon | undefined;
const held: Socket[] = [];
afterAll(async () => {
  for (const s of held) s.destroy();
  await daemon?.stop();
  await env?.close();
});

describe('slow clients', () => {
  it('300 half-sent requests neither block normal clients nor stay open forever', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    daemon = await startDaemon({
      config: env.config([{}], { schedule: { onStart: false, interval: '1h', jitter: '0s' }, tftp: { enabled: false } }),
      logger: silentLogger(),
      httpListen: [{ host: '127.0.0.1', port: 0 }],
      retryBaseMs: 5,
      drainMs: 200,
    });
    expect((await daemon.ops.coordinator.start('initial').done).result).toBe('ok');
    const { host, port } = daemon.http.addresses[0]!;
    const server = daemon.http.servers[0]!;
    // The bounds as configured: finite, so a held connection ends.
    expect(server.headersTimeout).toBeGreaterThan(0);
    expect(server.headersTimeout).toBeLessThanOrEqual(60_000);
    // The whole-request bound is enforced per request by the server (image uploads are bounded by progress instead).
    expect(daemon.http.requestTimeout).toBeGreaterThan(0);
    expect(daemon.http.requestTimeout).toBeLessThanOrEqual(300_000);

    let closed = 0;
    const open = (partial: string | undefined) =>
      new Promise<void>((resolve, reject) => {
        const s = connect(port, host, () => {
          if (partial !== undefined) s.write(partial);
          resolve();
        });
        s.on('error', () => undefined);
        s.on('close', () => closed++);
        s.once('error', reject);
        s.on('data', () => undefined);
        held.push(s);
      });
    for (let i = 0; i < 300; i++) await open(i % 2 ? `GET ${PREFIX}streams/v1/ind` : `GET ${PREFIX}streams/v1/index.json HTTP/1.1\r\nHost: x\r\nX-Slow: `);
    for (let i = 0; i < 20; i++) await open(undefined);
    expect(closed).toBe(0);

    // Normal clients are served at once, side by side with the held sockets.
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      const res = await request(`http://${host}:${port}${PREFIX}streams/v1/index.json`);
      await res.body.arrayBuffer();
      expect(res.statusCode).toBe(200);
      expect(Date.now() - t0).toBeLessThan(2000);
    }
    const live = await request(`http://${host}:${port}/livez`);
    await live.body.arrayBuffer();
    expect(live.statusCode).toBe(200);

    // And the held ones are closed in the end. Node checks the bound every 30 s
    // (connectionsCheckingInterval); with the configured 60 s headersTimeout that is
    // up to 90 s, too long to wait here, so the bound is shortened on the live server:
    // what is tested is that it is enforced on these connections.
    server.headersTimeout = 1000;
    const t0 = Date.now();
    await waitFor(() => closed === held.length, 40_000, `the server to close ${held.length} held sockets (closed ${closed})`);
    console.log(`slow clients: ${held.length} held sockets closed by the server after ${Date.now() - t0} ms (check interval 30 s)`);
    const after = await request(`http://${host}:${port}${PREFIX}streams/v1/index.json`);
    await after.body.arrayBuffer();
    expect(after.statusCode).toBe(200);
  });
});
