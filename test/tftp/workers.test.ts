import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMetrics, observeTftp } from '../../src/ops/metrics.js';
import { tftpGet } from '../../src/tftp/client.js';
import { encodeAck, encodeRequest } from '../../src/tftp/packet.js';
import { captureLogger } from '../http/fixture.js';
import { sample } from '../ops/helpers.js';
import { CRASH_OPENER_MODULE } from './crash-opener.js';
import { directoryWorkers, makeTree, random, run, sha256, tftpFixture, tmpOut, until, type UdpPeer } from './helpers.js';

/**
 * tftp.workers: 2 with real sockets and real clients. Admission (limits,
 * eviction) stays in the main thread; transfers run in the workers.
 */

const files = {
  'grubx64.efi': random(150_000),
  'item.bin': random(3 * 1024 * 1024 + 11),
  'small.bin': random(3000),
};
const fx = tftpFixture(files);
const two = () => directoryWorkers(fx.dir, 2);

async function realClientGet(port: number, client: 'tftp' | 'atftp' | 'curl', name: keyof typeof files): Promise<string> {
  const out = await tmpOut();
  fx.cleanups.push(out.cleanup);
  const path = join(out.dir, 'got');
  if (client === 'tftp') await run('tftp', ['127.0.0.1', String(port), '-m', 'binary', '-c', 'get', name, path]);
  else if (client === 'atftp') await run('atftp', ['--option', 'blksize 1468', '-g', '-r', name, '-l', path, '127.0.0.1', String(port)]);
  else await run('curl', ['-sS', '--tftp-blksize', '1468', '-o', path, `tftp://127.0.0.1:${port}/${name}`]);
  return sha256(await readFile(path));
}

/** Acknowledges DATA 1 and leaves the transfer waiting for ACK 2: a real client's transfer, not evictable. */
async function stall(p: UdpPeer, port: number): Promise<number> {
  p.send(encodeRequest('rrq', 'item.bin', 'octet'), port);
  const r = await p.recv();
  expect(r.packet).toMatchObject({ op: 'data', block: 1 });
  p.send(encodeAck(1), r.rinfo.port);
  expect((await p.recv()).packet).toMatchObject({ op: 'data', block: 2 });
  return r.rinfo.port;
}

describe('tftp.workers: 2', () => {
  it('serves many concurrent transfers with tftp-hpa, atftp, curl and our client, right bytes, spread over both workers, counted once', async () => {
    const { logger, lines } = captureLogger('info');
    const s = await fx.server({ workers: two(), maxTransfersPerClient: 100, logger });
    const metrics = createMetrics({ defaultMetrics: false });
    const unobserve = observeTftp(metrics, s.server);
    fx.cleanups.push(unobserve);

    const variants = [{}, { blksize: 1468 }, { blksize: 1468, windowsize: 16, tsize: true }, { blksize: 8192, windowsize: 4 }];
    const ours = Array.from({ length: 48 }, (_, i) => {
      const file = i % 6 === 0 ? 'item.bin' : 'grubx64.efi';
      return tftpGet({ host: '127.0.0.1', port: s.port, file, ...variants[i % variants.length] }).then((r) => ({ file, got: r.sha256 }));
    });
    const clients = (['tftp', 'atftp', 'curl'] as const).flatMap((c) =>
      (['grubx64.efi', 'item.bin'] as const).map((file) => realClientGet(s.port, c, file).then((got) => ({ file, got }))),
    );
    const results = await Promise.all([...ours, ...clients]);
    for (const { file, got } of results) expect(got).toBe(sha256(files[file as keyof typeof files]));

    const n = results.length;
    await until(() => s.ends.length === n, 10_000);
    expect(s.ends.every((e) => e.result === 'ok')).toBe(true);
    expect(s.server.activeTransfers).toBe(0);
    expect(s.server.workerLoad).toEqual([0, 0]);
    // Spread: both workers ran transfers, as the end events and the log lines say.
    expect(new Set(s.ends.map((e) => e.worker))).toEqual(new Set([0, 1]));
    const done = lines.filter((l) => l.msg === 'TFTP transfer done');
    expect(done).toHaveLength(n);
    expect(new Set(done.map((l) => l.worker))).toEqual(new Set([0, 1]));
    expect(done.every((l) => typeof l.client === 'string' && typeof l.file === 'string' && typeof l.bytes === 'number')).toBe(true);

    // The metrics equal the transfers made: one count each, and every byte the clients acknowledged.
    const wanted = results.reduce((sum, r) => sum + files[r.file as keyof typeof files].length, 0);
    const text = await metrics.registry.metrics();
    expect(sample(text, 'maas_mirror_tftp_transfers_total', { result: 'ok' })).toBe(n);
    expect(sample(text, 'maas_mirror_tftp_sent_bytes_total')).toBe(wanted);
    expect(sample(text, 'maas_mirror_tftp_active_transfers')).toBe(0);
    expect(s.server.bytesSent).toBeGreaterThanOrEqual(wanted);
  });

  it('keeps the per-client and global limits over all workers together', async () => {
    const s = await fx.server({ workers: two(), maxTransfersPerClient: 2, maxTransfers: 3, timeoutMs: 10_000 });
    const [a, b, c] = [await fx.peer(), await fx.peer(), await fx.peer()];
    await stall(a, s.port);
    await stall(b, s.port);
    // One on each worker, yet the client's cap of 2 counts both.
    expect(s.server.workerLoad.sort()).toEqual([1, 1]);
    c.send(encodeRequest('rrq', 'item.bin', 'octet'), s.port);
    expect((await c.recv()).packet).toMatchObject({ op: 'error', code: 0, message: 'server busy, try again later' });

    const other = await fx.peer('127.0.0.2');
    await stall(other, s.port);
    const third = await fx.peer('127.0.0.3');
    third.send(encodeRequest('rrq', 'item.bin', 'octet'), s.port);
    expect((await third.recv()).packet).toMatchObject({ op: 'error', code: 0, message: 'server busy, try again later' });
    expect(s.server.activeTransfers).toBe(3);
    expect(s.ends.map((e) => e.result)).toEqual(['busy', 'busy']);
  });

  it('evicts the oldest unacknowledged transfer in whichever worker runs it, and ends unanswered ones at the first-ACK budget', async () => {
    const s = await fx.server({ workers: two(), maxTransfers: 4, maxTransfersPerClient: 4, firstAckTimeoutMs: 60_000 });
    const hogs: UdpPeer[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await fx.peer('127.0.0.50');
      hogs.push(p);
      p.send(encodeRequest('rrq', 'grubx64.efi', 'octet'), s.port);
    }
    await until(() => s.server.activeTransfers === 4);
    await until(() => s.server.workerLoad.every((n) => n === 2));
    expect(await realClientGet(s.port, 'tftp', 'grubx64.efi')).toBe(sha256(files['grubx64.efi']));
    const evicted = s.ends.filter((e) => e.result === 'evicted');
    expect(evicted).toHaveLength(1);
    expect(evicted[0]!.client.address).toBe('127.0.0.50');
    expect(s.ends.some((e) => e.result === 'busy')).toBe(false);
    // The evicted transfer's worker stopped it: its client hears nothing more from it.
    const firstHog = hogs[0]!;
    await firstHog.drain(0);
    expect(await firstHog.drain(1500)).toEqual([]);

    const quick = await fx.server({ workers: two(), timeoutMs: 100, firstAckTimeoutMs: 600, firstAckResends: 2 });
    const p = await fx.peer('127.0.0.51');
    p.send(encodeRequest('rrq', 'small.bin', 'octet'), quick.port);
    await until(() => quick.ends.length === 1, 8_000);
    expect(quick.ends[0]).toMatchObject({ result: 'timeout', retransmits: 2 });
    const drawn = await p.drain(300);
    expect(drawn.map((r) => r.packet)).toEqual(Array(3).fill(expect.objectContaining({ op: 'data', block: 1 })));
  });

  it('drains on stop: a running transfer finishes, a stalled one is aborted with ERROR 0 at the deadline', async () => {
    const s = await fx.server({ workers: two(), timeoutMs: 30_000 });
    const p = await fx.peer();
    await stall(p, s.port);
    const running = tftpGet({ host: '127.0.0.1', port: s.port, file: 'item.bin', blksize: 1468 });
    await until(() => s.server.activeTransfers === 2);
    await s.server.stop({ deadlineMs: 4000 });
    expect((await running).sha256).toBe(sha256(files['item.bin']));
    // Resends of DATA 2 came first; the transfer's last word is the ERROR.
    const heard = (await p.drain(300)).map((r) => r.packet);
    expect(heard.at(-1)).toMatchObject({ op: 'error', code: 0, message: 'server shutting down' });
    expect(heard.slice(0, -1).every((pk) => pk.op === 'data' && pk.block === 2)).toBe(true);
    expect(s.ends.map((e) => e.result).sort()).toEqual(['ok', 'shutdown']);
    expect(s.server.activeTransfers).toBe(0);
    expect(s.server.workerLoad).toEqual([0, 0]);
  });

  it('ends the transfers of a worker that crashes as errors, frees their slots, logs it and starts the worker again', async () => {
    const { logger, lines } = captureLogger('info');
    const s = await fx.server({
      workers: { count: 2, opener: { module: CRASH_OPENER_MODULE, name: 'crashingOpener', data: fx.dir } },
      timeoutMs: 30_000,
      logger,
    });
    const [a, b] = [await fx.peer(), await fx.peer()];
    await stall(a, s.port);
    await stall(b, s.port);
    expect(s.server.workerLoad).toEqual([1, 1]);
    const crasher = await fx.peer();
    crasher.send(encodeRequest('rrq', 'crash', 'octet'), s.port);
    await until(() => s.ends.length === 2, 10_000);
    // The crash request and the stalled transfer on the same worker.
    expect(s.ends.map((e) => e.result)).toEqual(['error', 'error']);
    expect(s.ends[0]!.worker).toBe(s.ends[1]!.worker);
    expect(s.server.activeTransfers).toBe(1);
    const exited = lines.find((l) => l.msg === 'TFTP worker thread exited; its transfers ended as errors and it is started again');
    expect(exited).toMatchObject({ level: 'error', worker: s.ends[0]!.worker, transfers: 2 });

    await until(() => lines.some((l) => l.msg === 'TFTP worker thread started again'), 30_000);
    const again = await Promise.all(Array.from({ length: 6 }, () => tftpGet({ host: '127.0.0.1', port: s.port, file: 'grubx64.efi', blksize: 1468 })));
    for (const g of again) expect(g.sha256).toBe(sha256(files['grubx64.efi']));
    await until(() => s.ends.length === 8);
    expect(new Set(s.ends.slice(2).map((e) => e.worker))).toEqual(new Set([0, 1]));
  });

  it('a worker started again after a crash serves the configuration reloaded before it, not the first one', async () => {
    const { logger, lines } = captureLogger('info');
    const s = await fx.server({
      workers: { count: 2, opener: { module: CRASH_OPENER_MODULE, name: 'crashingOpener', data: fx.dir } },
      logger,
    });
    const later = await makeTree({ 'only-later.bin': random(2000) });
    fx.cleanups.push(later.cleanup);
    s.server.invalidate(later.dir);
    const crasher = await fx.peer();
    crasher.send(encodeRequest('rrq', 'crash', 'octet'), s.port);
    await until(() => lines.some((l) => l.msg === 'TFTP worker thread started again'), 30_000);
    // Round the workers: each must know the reloaded folder.
    const got = await Promise.allSettled(Array.from({ length: 6 }, () => tftpGet({ host: '127.0.0.1', port: s.port, file: 'only-later.bin' })));
    expect(got.map((g) => g.status)).toEqual(Array(6).fill('fulfilled'));
  });
});
