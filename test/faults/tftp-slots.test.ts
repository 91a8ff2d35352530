import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tftpGet } from '../../src/tftp/client.js';
import { encodeAck, encodeError, encodeRequest } from '../../src/tftp/packet.js';
import { directoryWorkers, random, run, sha256, tftpFixture, tmpOut, until, type UdpPeer } from '../tftp/helpers.js';

/**
 * Hostile TFTP traffic against the slot accounting, with real sockets from
 * many loopback source addresses (all of 127.0.0.0/8 is local on Linux) and
 * real clients that must still get their files.
 */

const files = { 'bootx64.efi': random(300_000), 'grubx64.efi': random(40_000) };
const fx = tftpFixture(files);

/** What the attacker sends: a tsize/blksize request that asks for the longest timeout. */
const HOSTILE_RRQ = encodeRequest('rrq', 'bootx64.efi', 'octet', [
  ['timeout', '255'],
  ['blksize', '1468'],
  ['tsize', '0'],
]);

/**
 * 32 source addresses, 16 never-acknowledged requests each (each from its own port: the same request
 * again from one port is a client's retry, not a new transfer), the whole burst again every second.
 */
async function flood(port: number): Promise<{ peers: UdpPeer[]; received: () => number; sent: () => number; stop: () => void }> {
  const peers: UdpPeer[] = [];
  for (let i = 2; i < 34; i++) for (let k = 0; k < 16; k++) peers.push(await fx.peer(`127.0.0.${i}`));
  let sent = 0;
  const burst = () => {
    for (const p of peers) p.send(HOSTILE_RRQ, port);
    sent += peers.length;
  };
  burst();
  const timer = setInterval(burst, 1000);
  const stop = () => clearInterval(timer);
  fx.cleanups.push(stop);
  // Packets are only counted (drain empties the queues), never answered.
  let received = 0;
  const counter = setInterval(() => {
    for (const p of peers) void p.drain(0).then((r) => (received += r.length));
  }, 200);
  fx.cleanups.push(() => clearInterval(counter));
  return { peers, received: () => received, sent: () => sent, stop };
}

async function tftpHpaGet(port: number, name: keyof typeof files): Promise<void> {
  const out = await tmpOut();
  fx.cleanups.push(out.cleanup);
  const path = join(out.dir, 'got');
  await run('tftp', ['127.0.0.1', String(port), '-m', 'binary', '-c', 'get', name, path]);
  expect(sha256(await readFile(path))).toBe(sha256(files[name]));
}

// tftp.workers 1 (all in one thread) and 2 (admission in the main thread, transfers in workers).
describe.each([1, 2])('TFTP slots under a flood of unacknowledged requests, tftp.workers %i', (workers) => {
  const server = (options: Parameters<typeof fx.server>[0] = {}) => fx.server({ workers: directoryWorkers(fx.dir, workers), ...options });

  it('serves real clients (tftp-hpa, atftp, a UEFI-style tsize probe then windowsize 4) while 32 x 16 RRQs with timeout 255 keep coming, and frees every slot within seconds after', async () => {
    const s = await server();
    const f = await flood(s.port);
    await until(() => s.server.activeTransfers >= 500, 10_000);

    await tftpHpaGet(s.port, 'bootx64.efi');
    const out = await tmpOut();
    fx.cleanups.push(out.cleanup);
    await run('atftp', ['--option', 'blksize 1468', '-g', '-r', 'grubx64.efi', '-l', join(out.dir, 'g'), '127.0.0.1', String(s.port)]);
    expect(sha256(await readFile(join(out.dir, 'g')))).toBe(sha256(files['grubx64.efi']));

    // OVMF's way: a tsize probe it aborts with ERROR 8 after our OACK, then the read with windowsize 4.
    const uefi = await fx.peer('127.0.0.1');
    uefi.send(encodeRequest('rrq', 'bootx64.efi', 'octet', [['blksize', '1468'], ['tsize', '0']]), s.port);
    const oack = await uefi.recv();
    expect(oack.packet).toMatchObject({ op: 'oack', options: [['blksize', '1468'], ['tsize', '300000']] });
    uefi.send(encodeError(8, 'tsize probe'), oack.rinfo.port);
    const got = await tftpGet({ host: '127.0.0.1', port: s.port, file: 'bootx64.efi', blksize: 1468, windowsize: 4 });
    expect(got.sha256).toBe(sha256(files['bootx64.efi']));
    expect(got.options).toMatchObject({ blksize: '1468', windowsize: '4' });

    f.stop();
    // Nothing was ever acknowledged: the first-ACK budget (3 s by default) ends every flood transfer.
    await until(() => s.server.activeTransfers === 0, 15_000);
    const flooded = s.ends.filter((e) => e.client.address !== '127.0.0.1');
    expect(flooded.every((e) => ['timeout', 'evicted'].includes(e.result))).toBe(true);
    // Reflection budget: at most 1 + firstAckResends (2) packets per request, and no ERROR after.
    await new Promise((r) => setTimeout(r, 400));
    expect(f.received()).toBeLessThanOrEqual(3 * f.sent());
  });

  it('frees an unacknowledged request within seconds whatever timeout it asked for, drawing at most 3 packets and no ERROR', async () => {
    const s = await server();
    const withOptions = await fx.peer('127.0.0.40');
    const plain = await fx.peer('127.0.0.41');
    withOptions.send(HOSTILE_RRQ, s.port);
    plain.send(encodeRequest('rrq', 'bootx64.efi', 'octet'), s.port);
    await until(() => s.server.activeTransfers === 2);
    await until(() => s.server.activeTransfers === 0, 8_000);
    // Anything still on its way arrives well within a second on loopback.
    const drawn = [await withOptions.drain(1000), await plain.drain(0)];
    expect(drawn[0]!.map((r) => r.packet.op)).toEqual(expect.arrayContaining(['oack']));
    expect(drawn[1]!.map((r) => r.packet.op)).toEqual(expect.arrayContaining(['data']));
    for (const packets of drawn) {
      expect(packets.length).toBeGreaterThanOrEqual(1);
      expect(packets.length).toBeLessThanOrEqual(3);
      expect(packets.some((r) => r.packet.op === 'error')).toBe(false);
    }
    expect(s.ends.map((e) => e.result)).toEqual(['timeout', 'timeout']);
  });

  it('spends its resends early and then waits out the rest of tftp.firstAckTimeout silently', async () => {
    const s = await server({ timeoutMs: 200, firstAckTimeoutMs: 1500, firstAckResends: 1 });
    const p = await fx.peer('127.0.0.45');
    const t0 = Date.now();
    p.send(HOSTILE_RRQ, s.port);
    await until(() => s.server.activeTransfers === 1);
    // Timers never fire early: at 800 ms the budget is not spent, whatever the load.
    const early = await p.drain(Math.max(0, 800 - (Date.now() - t0)));
    expect(early.map((r) => r.packet.op)).toEqual(['oack', 'oack']);
    expect(s.server.activeTransfers).toBe(1);
    await until(() => s.server.activeTransfers === 0, 8_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    expect(await p.drain(300)).toEqual([]);
    expect(s.ends.map((e) => e.result)).toEqual(['timeout']);
  });

  it('keeps to the first-ACK budget, not tftp.retries, before the first ACK: no ERROR however few retries', async () => {
    const s = await server({ timeoutMs: 100, retries: 1, firstAckTimeoutMs: 600, firstAckResends: 3 });
    const p = await fx.peer('127.0.0.46');
    p.send(encodeRequest('rrq', 'grubx64.efi', 'octet'), s.port);
    await until(() => s.ends.length === 1, 8_000);
    const drawn = await p.drain(300);
    expect(drawn.map((r) => r.packet)).toEqual(Array(4).fill(expect.objectContaining({ op: 'data', block: 1 })));
    expect(s.ends[0]).toMatchObject({ result: 'timeout', retransmits: 3 });
  });

  it('evicts the oldest unacknowledged transfer rather than refuse a new client when full, and lets a client replace its own', async () => {
    // A long first-ACK budget, so the hog's requests are still waiting however slow this machine is.
    const s = await server({ maxTransfers: 8, maxTransfersPerClient: 8, firstAckTimeoutMs: 60_000 });
    // Each request from its own port (one port asking again is a retry of the same transfer).
    const hogPort = () => fx.peer('127.0.0.50');
    for (let i = 0; i < 8; i++) (await hogPort()).send(HOSTILE_RRQ, s.port);
    await until(() => s.server.activeTransfers === 8);

    // Full: a new client from another address is served, not told "server busy".
    await tftpHpaGet(s.port, 'grubx64.efi');
    expect(s.ends.filter((e) => e.result === 'evicted')).toHaveLength(1);
    expect(s.ends.some((e) => e.result === 'busy')).toBe(false);

    // At its own cap, the client's newest request replaces its oldest unacknowledged one.
    await until(() => s.server.activeTransfers === 7);
    (await hogPort()).send(HOSTILE_RRQ, s.port);
    await until(() => s.server.activeTransfers === 8);
    (await hogPort()).send(HOSTILE_RRQ, s.port);
    await until(() => s.ends.filter((e) => e.result === 'evicted').length === 2);
    expect(s.server.activeTransfers).toBe(8);
    expect(s.ends.some((e) => e.result === 'busy')).toBe(false);
  });

  it('ends a transfer at once when the client port is gone (ICMP port unreachable), without resending for the full retries', async () => {
    const s = await server({ timeoutMs: 500, retries: 5 });
    const p = await fx.peer('127.0.0.60');
    p.send(encodeRequest('rrq', 'bootx64.efi', 'octet'), s.port);
    const d1 = await p.recv();
    expect(d1.packet).toMatchObject({ op: 'data', block: 1 });
    p.send(encodeAck(1), d1.rinfo.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'data', block: 2 });
    // The client goes away: its port closes, so the next resend draws an ICMP port unreachable.
    p.close();
    await until(() => s.ends.length === 1, 10_000);
    expect(s.ends[0]).toMatchObject({ result: 'aborted_by_client', retransmits: 1 });
    expect(s.server.activeTransfers).toBe(0);
  });
});
