import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WanProxy } from '../../bench/wan-proxy.js';

/**
 * The WAN model's shaping. Only lower bounds on time: a loaded machine can
 * make anything slower, never faster than the link allows.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server that answers each connection's first bytes with `body`, then ends. */
async function sender(body: Buffer): Promise<number> {
  const server: Server = createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.end(body));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  cleanups.push(() => new Promise<void>((ok) => server.close(() => ok())));
  return (server.address() as AddressInfo).port;
}

async function proxy(port: number, o: { delayMs: number; perConnection: number; total: number }): Promise<number> {
  const p = new WanProxy({ target: { host: '127.0.0.1', port }, ...o });
  const at = await p.start();
  cleanups.push(() => p.stop());
  return at;
}

/** Connects, sends a request, and collects the answer: its bytes and when the first and last came, from the connect call. */
function fetchThrough(port: number): Promise<{ bytes: Buffer; firstMs: number; lastMs: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const chunks: Buffer[] = [];
    let firstMs = -1;
    const s = connect(port, '127.0.0.1', () => s.write('GET\n'));
    s.on('data', (c: Buffer) => {
      if (firstMs < 0) firstMs = performance.now() - t;
      chunks.push(c);
    });
    s.on('end', () => {
      resolve({ bytes: Buffer.concat(chunks), firstMs, lastMs: performance.now() - t });
      s.destroy();
    });
    s.on('error', reject);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('bench WAN proxy', () => {
  it('delivers every byte in order, and 1 MB at 5 MB/s per connection takes at least ~200 ms', async () => {
    const body = randomBytes(1 << 20);
    const port = await proxy(await sender(body), { delayMs: 20, perConnection: 5e6, total: 25e6 });
    const r = await fetchThrough(port);
    expect(r.bytes.length).toBe(body.length);
    expect(sha(r.bytes)).toBe(sha(body));
    // 1,048,576 B / 5 MB/s = 210 ms on the link, plus the handshake and the round trip.
    expect(r.lastMs).toBeGreaterThanOrEqual(150);
  });

  it('caps all connections together: two 1 MB answers under a 5 MB/s link take at least ~400 ms', async () => {
    const body = randomBytes(1 << 20);
    const port = await proxy(await sender(body), { delayMs: 5, perConnection: 100e6, total: 5e6 });
    const t = performance.now();
    const both = await Promise.all([fetchThrough(port), fetchThrough(port)]);
    const ms = performance.now() - t;
    for (const r of both) expect(sha(r.bytes)).toBe(sha(body));
    expect(ms).toBeGreaterThanOrEqual(350);
  });

  it('a request costs a round trip and a new connection one more', async () => {
    const port = await proxy(await sender(Buffer.from('ok')), { delayMs: 50, perConnection: 5e6, total: 25e6 });
    const r = await fetchThrough(port);
    expect(r.bytes.toString()).toBe('ok');
    // Handshake (2 × 50 ms), then the request out (50 ms) and the answer back (50 ms).
    expect(r.firstMs).toBeGreaterThanOrEqual(190);
  });
});
