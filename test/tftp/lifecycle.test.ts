import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { tftpGet } from '../../src/tftp/client.js';
import { TftpAccessError, TftpBindError, TftpRemoteError, TftpServer, openFromDirectory } from '../../src/tftp/index.js';
import { encodeAck, encodeRequest } from '../../src/tftp/packet.js';
import { tftpFixture, random, run, sha256, tmpOut, until } from './helpers.js';

const files = { 'item.bin': random(2 * 1024 * 1024 + 3), 'small.bin': random(3000) };
const tree = tftpFixture(files);
const { cleanups, server, peer } = tree;

describe('start', () => {
  it('resolves with the bound addresses, ephemeral ports resolved', async () => {
    const s = new TftpServer({
      listen: [
        { host: '127.0.0.1', port: 0 },
        { host: '[::1]', port: 0 },
      ],
      open: openFromDirectory(tree.dir),
    });
    cleanups.push(() => s.stop({ deadlineMs: 0 }));
    const bound = await s.start();
    expect(bound).toHaveLength(2);
    expect(bound[0]).toMatchObject({ host: '127.0.0.1' });
    expect(bound[1]).toMatchObject({ host: '::1' });
    expect(bound.every((b) => b.port > 0)).toBe(true);
  });

  it('rejects with MM_TFTP_BIND when the port is taken, releasing what it had bound', async () => {
    const holder = createSocket('udp4');
    await new Promise<void>((r) => holder.bind({ address: '127.0.0.1', port: 0 }, r));
    cleanups.push(() => void holder.close());
    const taken = holder.address().port;

    const free = createSocket('udp4');
    await new Promise<void>((r) => free.bind({ address: '127.0.0.1', port: 0 }, r));
    const freePort = free.address().port;
    await new Promise<void>((r) => free.close(() => r()));

    const s = new TftpServer({
      listen: [
        { host: '127.0.0.1', port: freePort },
        { host: '127.0.0.1', port: taken },
      ],
      open: openFromDirectory(tree.dir),
    });
    const err = await s.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TftpBindError);
    expect(err).toMatchObject({ code: 'MM_TFTP_BIND' });
    expect((err as Error).message).toContain(`127.0.0.1:${taken}`);
    expect((err as Error).message).toContain('already in use');

    // The first address was released: another server can take it.
    const again = new TftpServer({ listen: [{ host: '127.0.0.1', port: freePort }], open: openFromDirectory(tree.dir) });
    await again.start();
    await again.stop({ deadlineMs: 0 });
  });
});

describe('IPv6', () => {
  it('serves over [::1]', async () => {
    const s = await server({}, '[::1]');
    const r = await tftpGet({ host: '::1', port: s.port, file: 'item.bin', blksize: 1468, windowsize: 8, tsize: true });
    expect(r.sha256).toBe(sha256(files['item.bin']));
    expect(r.options.tsize).toBe(String(files['item.bin'].length));
  });

  it('serves tftp-hpa over [::1]', async () => {
    const s = await server({}, '::1');
    const out = await tmpOut();
    cleanups.push(out.cleanup);
    await run('tftp', ['-6', '::1', String(s.port), '-m', 'binary', '-c', 'get', 'small.bin', `${out.dir}/small.bin`]);
    expect(sha256(await readFile(`${out.dir}/small.bin`))).toBe(sha256(files['small.bin']));
  });
});

describe('stop', () => {
  it('lets a running transfer finish before the deadline', async () => {
    const s = await server();
    const get = tftpGet({ host: '127.0.0.1', port: s.port, file: 'item.bin' });
    await new Promise((r) => setTimeout(r, 20));
    expect(s.server.activeTransfers).toBe(1);
    await s.server.stop({ deadlineMs: 10_000 });
    expect((await get).sha256).toBe(sha256(files['item.bin']));
    expect(s.ends.map((e) => e.result)).toEqual(['ok']);
  });

  it('aborts stalled transfers at the deadline with ERROR 0, and takes no new requests', async () => {
    const s = await server({ timeoutMs: 30_000 });
    const p = await peer();
    p.send(encodeRequest('rrq', 'small.bin', 'octet'), s.port);
    const first = await p.recv();
    expect(first.packet).toMatchObject({ op: 'data', block: 1 });
    const t0 = Date.now();
    await s.server.stop({ deadlineMs: 200 });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 0, message: 'server shutting down' });
    expect(s.server.activeTransfers).toBe(0);
    expect(s.ends.map((e) => e.result)).toEqual(['shutdown']);
    p.send(encodeAck(1), first.rinfo.port);
    p.send(encodeRequest('rrq', 'small.bin', 'octet'), s.port);
    expect(await p.drain(200)).toEqual([]);
  });

  it('aborts a transfer whose file is still being opened', async () => {
    let release: () => void = () => undefined;
    const s = new TftpServer({
      listen: [{ host: '127.0.0.1', port: 0 }],
      open: async () => {
        await new Promise<void>((r) => (release = r));
        return undefined;
      },
    });
    const ends: string[] = [];
    s.on('transferEnd', (e) => ends.push(e.result));
    const [bound] = await s.start();
    const p = await peer();
    p.send(encodeRequest('rrq', 'slow', 'octet'), bound!.port);
    await new Promise((r) => setTimeout(r, 50));
    expect(s.activeTransfers).toBe(1);
    await s.stop({ deadlineMs: 50 });
    expect(s.activeTransfers).toBe(0);
    release();
    expect(await p.drain(100)).toEqual([]);
    expect(ends).toEqual(['shutdown']);
  });
});

describe('open callback', () => {
  it('maps TftpAccessError to ERROR 2 and other failures to ERROR 0, and survives both', async () => {
    const s = new TftpServer({
      listen: [{ host: '127.0.0.1', port: 0 }],
      open: async (name) => {
        if (name === 'denied') throw new TftpAccessError(name, 'test');
        if (name === 'broken') throw new Error('disk on fire');
        return openFromDirectory(tree.dir)(name, { address: '', port: 0 });
      },
    });
    const ends: string[] = [];
    s.on('transferEnd', (e) => ends.push(e.result));
    const [bound] = await s.start();
    cleanups.push(() => s.stop({ deadlineMs: 0 }));
    const get = (file: string) => tftpGet({ host: '127.0.0.1', port: bound!.port, file });
    await expect(get('denied')).rejects.toMatchObject({ tftpCode: 2 });
    await expect(get('broken')).rejects.toBeInstanceOf(TftpRemoteError);
    await expect(get('broken')).rejects.toMatchObject({ tftpCode: 0 });
    expect((await get('small.bin')).sha256).toBe(sha256(files['small.bin']));
    // The client is done when it sends the last ACK; the server when that ACK arrives.
    await until(() => ends.length === 4);
    expect(ends).toEqual(['access_violation', 'error', 'error', 'ok']);
  });

  it('keeps serving when a transferEnd listener throws', async () => {
    const s = await server();
    s.server.on('transferEnd', () => {
      throw new Error('metrics bug');
    });
    expect((await tftpGet({ host: '127.0.0.1', port: s.port, file: 'small.bin' })).sha256).toBe(sha256(files['small.bin']));
    expect((await tftpGet({ host: '127.0.0.1', port: s.port, file: 'small.bin' })).sha256).toBe(sha256(files['small.bin']));
  });

  it('counts bytes sent', async () => {
    const s = await server();
    await tftpGet({ host: '127.0.0.1', port: s.port, file: 'small.bin', blksize: 1024 });
    // With worker threads the count arrives with the transfer's end.
    await until(() => s.ends.length === 1);
    expect(s.server.bytesSent).toBe(files['small.bin'].length);
    expect(s.ends[0]).toMatchObject({ result: 'ok', bytes: 3000, file: 'small.bin', client: { address: '127.0.0.1' } });
    expect(s.ends[0]!.durationMs).toBeGreaterThan(0);
  });
});
