import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { UdpRelay, type RelayOptions } from './relay.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function socket(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

/**
 * A TFTP-like server: each request on its main port is answered from a new
 * socket (its TID), which then echoes whatever reaches it, prefixed "tid:".
 */
async function tidServer(): Promise<{ port: number; received: () => number }> {
  const main = await socket();
  let received = 0;
  main.on('message', (msg, rinfo) => {
    received++;
    void socket().then((tid) => {
      tid.on('message', (m, r) => {
        received++;
        tid.send(Buffer.concat([Buffer.from('tid:'), m]), r.port, r.address);
      });
      tid.send(Buffer.concat([Buffer.from('hello:'), msg]), rinfo.port, rinfo.address);
    });
  });
  return { port: main.address().port, received: () => received };
}

async function relay(o: Omit<RelayOptions, 'target'>, port: number): Promise<{ relay: UdpRelay; port: number }> {
  const r = new UdpRelay({ target: { host: '127.0.0.1', port }, ...o });
  const bound = await r.start();
  cleanups.push(() => r.stop());
  return { relay: r, port: bound };
}

function next(s: Socket, ms = 5000): Promise<{ msg: Buffer; rinfo: RemoteInfo }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('nothing came')), ms);
    s.once('message', (msg, rinfo) => {
      clearTimeout(t);
      resolve({ msg, rinfo });
    });
  });
}

describe('UdpRelay', () => {
  it('follows the server to its per-transfer port, and gives the client a port per transfer', async () => {
    const server = await tidServer();
    const { port } = await relay({ delayMs: 0, dropShare: 0 }, server.port);
    const client = await socket();
    client.send('rrq', port, '127.0.0.1');
    const first = await next(client);
    expect(first.msg.toString()).toBe('hello:rrq');
    expect(first.rinfo.port).not.toBe(port);
    client.send('ack', first.rinfo.port, '127.0.0.1');
    const second = await next(client);
    expect(second.msg.toString()).toBe('tid:ack');
    expect(second.rinfo.port).toBe(first.rinfo.port);

    // A second client transfer (a new client port) gets its own mapping.
    const other = await socket();
    other.send('rrq2', port, '127.0.0.1');
    const third = await next(other);
    expect(third.msg.toString()).toBe('hello:rrq2');
    expect(third.rinfo.port).not.toBe(first.rinfo.port);
  });

  it('delays each direction by the given time', async () => {
    const server = await tidServer();
    const { port } = await relay({ delayMs: 40, dropShare: 0 }, server.port);
    const client = await socket();
    const t0 = performance.now();
    client.send('rrq', port, '127.0.0.1');
    await next(client);
    const rtt = performance.now() - t0;
    // Two crossings of 40 ms; the upper bound only says the delay is not wildly more (a loaded host).
    expect(rtt).toBeGreaterThanOrEqual(79);
    expect(rtt).toBeLessThan(3000);
  });

  it('drops about the given share of datagrams', async () => {
    const sink = await socket();
    let received = 0;
    sink.on('message', () => received++);
    const { port, relay: r } = await relay({ delayMs: 0, dropShare: 0.25 }, sink.address().port);
    const client = await socket();
    const n = 2000;
    // Paced, so no socket buffer overflows and every loss is the relay's.
    for (let i = 0; i < n; i += 50) {
      for (let j = 0; j < 50; j++) client.send(`d${i + j}`, port, '127.0.0.1');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(received).toBeLessThanOrEqual(n - r.stats.dropped);
    expect(r.stats.dropped / n).toBeGreaterThan(0.15);
    expect(r.stats.dropped / n).toBeLessThan(0.35);
    expect(received / n).toBeGreaterThan(0.5);
  });

  it('drops nothing at share 0 and everything at share 1', async () => {
    const server = await tidServer();
    const none = await relay({ delayMs: 0, dropShare: 1 }, server.port);
    const client = await socket();
    for (let i = 0; i < 50; i++) client.send('x', none.port, '127.0.0.1');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(server.received()).toBe(0);
    expect(none.relay.stats).toEqual({ forwarded: 0, dropped: 50 });
    expect(() => new UdpRelay({ target: { host: '127.0.0.1', port: 1 }, delayMs: 0, dropShare: 1.5 })).toThrow(/between 0 and 1/);
  });
});
