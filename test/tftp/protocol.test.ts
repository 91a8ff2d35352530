import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { tftpGet } from '../../src/tftp/client.js';
import { encodeAck, encodeError, encodeRequest } from '../../src/tftp/packet.js';
import { captureLogger } from '../http/fixture.js';
import { UdpPeer, makeTree, random, rawFetch, sha256, startServer, until, type Received, type Running } from './helpers.js';

/** Packet-level behaviour, scripted with a raw UDP peer. */

const files = {
  'four.bin': random(3 * 512 + 100),
  'hundred.bin': random(100 * 512 + 1),
  'twenty.bin': random(20 * 512 + 5),
  'empty.bin': Buffer.alloc(0),
  // 75 000 blocks of 8 bytes: wraps the block number within a quick test.
  'wrap.bin': random(600_000),
  'text.cfg': Buffer.from('a\nb\n'),
};

const TIMEOUT = 250;
let tree: Awaited<ReturnType<typeof makeTree>>;
let srv: Running;
const peers: UdpPeer[] = [];
const peer = async (address?: string) => {
  const p = await UdpPeer.open(address);
  peers.push(p);
  return p;
};

beforeAll(async () => {
  tree = await makeTree(files);
  // The adaptive timer's floor at the timeout: these tests time the negotiated timer; the adaptive one has its own.
  srv = await startServer(tree.dir, { timeoutMs: TIMEOUT, retries: 3, minRtoMs: TIMEOUT });
});
afterEach(() => {
  for (const p of peers.splice(0)) p.close();
});
afterAll(async () => {
  await srv.stop();
  await tree.cleanup();
});

const rrq = (name: string | Buffer, options: [string, string][] = [], mode = 'octet') =>
  encodeRequest('rrq', name, mode, options);

function expectData(r: Received, block: number, content?: Buffer): void {
  expect(r.packet).toMatchObject({ op: 'data', block });
  if (content && r.packet.op === 'data') expect(Buffer.compare(r.packet.data, content)).toBe(0);
}

const endOf = async (name: string, client: UdpPeer) => {
  await until(() => srv.ends.some((e) => e.file === name && e.client.port === client.port));
  return srv.ends.find((e) => e.file === name && e.client.port === client.port);
};

describe('retransmission', () => {
  it('resends DATA after a lost ACK, only when the timer fires', async () => {
    const p = await peer();
    p.send(rrq('four.bin'), srv.port);
    const first = await p.recv();
    expectData(first, 1, files['four.bin'].subarray(0, 512));
    const t0 = Date.now();
    // Our ACK 1 "is lost": we stay silent; the same DATA 1 must come again after the timeout.
    const again = await p.recv(2000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(TIMEOUT - 20);
    expectData(again, 1, files['four.bin'].subarray(0, 512));
    expect(again.rinfo.port).toBe(first.rinfo.port);
    const tid = first.rinfo.port;

    p.send(encodeAck(1), tid);
    expectData(await p.recv(), 2);
    // DATA 2 "is lost": a client re-ACKs block 1. That duplicate ACK must not trigger a resend.
    p.send(encodeAck(1), tid);
    expect(await p.drain(TIMEOUT / 2)).toEqual([]);
    const resent = await p.recv(2000);
    expectData(resent, 2, files['four.bin'].subarray(512, 1024));
    p.send(encodeAck(2), tid);
    expectData(await p.recv(), 3);
    p.send(encodeAck(3), tid);
    expectData(await p.recv(), 4, files['four.bin'].subarray(1536));
    p.send(encodeAck(4), tid);
    expect(await endOf('four.bin', p)).toMatchObject({ result: 'ok', bytes: files['four.bin'].length, retransmits: 2 });
  });

  it('never duplicates DATA when every ACK arrives twice (Sorcerer’s Apprentice)', async () => {
    // A long timeout, adaptive one included: any duplicate DATA seen here can only come from answering a duplicate ACK.
    const patient = await startServer(tree.dir, { timeoutMs: 20_000, minRtoMs: 20_000 });
    const p = await peer();
    p.send(rrq('hundred.bin'), patient.port);
    const seen = new Map<number, number>();
    const chunks: Buffer[] = [];
    for (;;) {
      const r = await p.recv();
      if (r.packet.op !== 'data') throw new Error(`unexpected ${r.packet.op}`);
      seen.set(r.packet.block, (seen.get(r.packet.block) ?? 0) + 1);
      if (seen.get(r.packet.block) === 1) chunks.push(Buffer.from(r.packet.data));
      p.send(encodeAck(r.packet.block), r.rinfo.port);
      p.send(encodeAck(r.packet.block), r.rinfo.port);
      if (r.packet.data.length < 512) break;
    }
    // Late duplicates of the final ACK must not wake anything either.
    expect(await p.drain(50)).toEqual([]);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(files['hundred.bin']));
    expect([...seen.values()].every((count) => count === 1)).toBe(true);
    expect(seen.size).toBe(101);
    await until(() => patient.ends.length === 1);
    expect(patient.ends[0]).toMatchObject({ result: 'ok', retransmits: 0 });
    await patient.stop();
  });

  it('gives up after the configured retries, tells the client and frees the transfer', async () => {
    const p = await peer();
    p.send(rrq('four.bin'), srv.port);
    // Acknowledged once, so the transfer is past the first-ACK budget and gets every retry.
    const first = await p.recv();
    expectData(first, 1);
    p.send(encodeAck(1), first.rinfo.port);
    const packets = [await p.recv(), await p.recv(), await p.recv(), await p.recv(), await p.recv()];
    expect(packets.slice(0, 4).map((r) => r.packet)).toEqual(Array(4).fill(expect.objectContaining({ op: 'data', block: 2 })));
    expect(packets[4]?.packet).toMatchObject({ op: 'error', code: 0 });
    expect(await endOf('four.bin', p)).toMatchObject({ result: 'timeout', retransmits: 3 });
    expect(srv.server.activeTransfers).toBe(0);
    // The transfer socket is closed: nothing answers there any more.
    p.send(encodeAck(1), packets[0]!.rinfo.port);
    expect(await p.drain(TIMEOUT * 2)).toEqual([]);
  });

  it('resends the OACK when its ACK is lost', async () => {
    const p = await peer();
    p.send(rrq('four.bin', [['blksize', '1024']]), srv.port);
    const a = await p.recv();
    const b = await p.recv(2000);
    expect(a.packet).toEqual({ op: 'oack', options: [['blksize', '1024']] });
    expect(b.packet).toEqual(a.packet);
    p.send(encodeAck(0), a.rinfo.port);
    expectData(await p.recv(), 1, files['four.bin'].subarray(0, 1024));
    p.send(encodeError(0, 'enough'), a.rinfo.port);
    expect(await endOf('four.bin', p)).toMatchObject({ result: 'aborted_by_client' });
  });

  it('resends a lost block after the measured round trip, not the whole negotiated timeout, and only once that early', async () => {
    // A timeout far above the adaptive floor (50 ms): an early resend can only come from the measured round trip.
    const NEGOTIATED = 8000;
    const lan = await startServer(tree.dir, { timeoutMs: NEGOTIATED, retries: 2 });
    onTestFinished(() => lan.stop());
    const p = await peer();
    p.send(rrq('hundred.bin'), lan.port);
    let r = await p.recv();
    const tid = r.rinfo.port;
    // Ten quick round trips to measure.
    for (let b = 1; b <= 10; b++) {
      expectData(r, b);
      p.send(encodeAck(b), tid);
      r = await p.recv();
    }
    expectData(r, 11);
    // ACK 11 "is lost".
    const t0 = performance.now();
    const again = await p.recv(NEGOTIATED / 2);
    expect(performance.now() - t0).toBeLessThan(NEGOTIATED / 2);
    expectData(again, 11);
    // A client silent past one round trip is more likely stalled: the next resend waits the negotiated timeout.
    expect(await p.drain(1000)).toEqual([]);
    p.send(encodeAck(11), tid);
    expectData(await p.recv(), 12);
    p.send(encodeError(0, 'enough'), tid);
    await until(() => lan.ends.length === 1);
    expect(lan.ends[0]).toMatchObject({ result: 'aborted_by_client', retransmits: 1 });
  });
});

describe('option negotiation', () => {
  it('handles the UEFI tsize probe: OACK, ERROR 8 (logged at debug), then a new request that completes', async () => {
    const { logger, lines } = captureLogger('debug');
    const logged = await startServer(tree.dir, { timeoutMs: TIMEOUT, retries: 3, logger });
    try {
      const p = await peer();
      p.send(rrq('hundred.bin', [['tsize', '0'], ['blksize', '1468']]), logged.port);
      const oack = await p.recv();
      expect(oack.packet).toEqual({
        op: 'oack',
        options: [
          ['tsize', String(files['hundred.bin'].length)],
          ['blksize', '1468'],
        ],
      });
      p.send(encodeError(8, 'tsize only'), oack.rinfo.port);
      await until(() => logged.ends.some((e) => e.file === 'hundred.bin' && e.client.port === p.port));
      expect(logged.ends[0]).toMatchObject({ result: 'aborted_by_client', bytes: 0 });
      expect(await p.drain(TIMEOUT * 2)).toEqual([]);
      // Routine for firmware: one debug line, nothing at info or above about it.
      const aborts = lines.filter((l) => l.msg === 'TFTP client aborted the transfer');
      expect(aborts).toEqual([expect.objectContaining({ level: 'debug', code: 8, file: 'hundred.bin' })]);
      expect(lines.filter((l) => l.level !== 'debug' && l.level !== 'trace').map((l) => l.msg)).toEqual(['TFTP server listening']);

      const { data, oack: second } = await rawFetch(p, logged.port, rrq('hundred.bin', [['blksize', '1468']]));
      expect(second).toEqual({ blksize: '1468' });
      expect(sha256(data)).toBe(sha256(files['hundred.bin']));
      await until(() => logged.ends.length === 2);
      // The capture does see info lines: the completed transfer is one.
      expect(lines.filter((l) => l.level === 'info').map((l) => l.msg)).toContain('TFTP transfer done');
    } finally {
      await logged.stop();
    }
  });

  it('sends no OACK when no option is accepted', async () => {
    const p = await peer();
    p.send(rrq('four.bin', [['multicast', ''], ['blksize', 'huge']]), srv.port);
    expectData(await p.recv(), 1);
  });

  it('does not offer tsize in netascii, and converts the text', async () => {
    const p = await peer();
    const { data, oack } = await rawFetch(p, srv.port, rrq('text.cfg', [['tsize', '0']], 'netascii'));
    expect(oack).toBeUndefined();
    expect(data.toString('latin1')).toBe('a\r\nb\r\n');
  });

  it('refuses unsupported modes', async () => {
    const p = await peer();
    p.send(rrq('four.bin', [], 'mail'), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 4 });
  });

  it('starts a new window from a partial ACK (RFC 7440)', async () => {
    const p = await peer();
    p.send(rrq('twenty.bin', [['windowsize', '4']]), srv.port);
    const oack = await p.recv();
    expect(oack.packet).toEqual({ op: 'oack', options: [['windowsize', '4']] });
    const tid = oack.rinfo.port;
    p.send(encodeAck(0), tid);
    const w1 = [await p.recv(), await p.recv(), await p.recv(), await p.recv()];
    expect(w1.map((r) => r.packet.op === 'data' && r.packet.block)).toEqual([1, 2, 3, 4]);
    expect(await p.drain(TIMEOUT / 3)).toEqual([]);
    // Block 3 "went missing": ACK 2, the new window is 3..6.
    p.send(encodeAck(2), tid);
    const w2 = [await p.recv(), await p.recv(), await p.recv(), await p.recv()];
    expect(w2.map((r) => r.packet.op === 'data' && r.packet.block)).toEqual([3, 4, 5, 6]);
    expectData(w2[0]!, 3, files['twenty.bin'].subarray(1024, 1536));
    p.send(encodeError(0, 'done testing'), tid);
  });

  it('wraps block numbers inside windows', async () => {
    const r = await tftpGet({ host: '127.0.0.1', port: srv.port, file: 'wrap.bin', blksize: 8, windowsize: 16, tsize: true });
    expect(r.options).toEqual({ blksize: '8', windowsize: '16', tsize: '600000' });
    expect(r.sha256).toBe(sha256(files['wrap.bin']));
    expect(r.duplicates).toBe(0);
  });

  it('serves an empty file as one empty DATA', async () => {
    const p = await peer();
    const { data } = await rawFetch(p, srv.port, rrq('empty.bin'));
    expect(data.length).toBe(0);
  });
});

describe('transfer IDs', () => {
  it('lets no stranger into a transfer port, and keeps the transfer', async () => {
    const p = await peer();
    const stranger = await peer();
    p.send(rrq('four.bin'), srv.port);
    const first = await p.recv();
    const tid = first.rinfo.port;
    // The transfer socket is connected to its client: the kernel drops anyone else's packets (as tftpd-hpa's).
    stranger.send(encodeAck(1), tid);
    stranger.send(encodeError(0, 'x'), tid);
    expect(await stranger.drain(50)).toEqual([]);
    // The stranger's ACK 1 did not move the transfer on: the client still gets nothing before its own ACK.
    expect(await p.drain(50)).toEqual([]);
    const chunks = [first.packet.op === 'data' ? first.packet.data : Buffer.alloc(0)];
    for (let b = 1; b <= 3; b++) {
      p.send(encodeAck(b), tid);
      const r = await p.recv();
      expectData(r, b + 1);
      if (r.packet.op === 'data') chunks.push(r.packet.data);
    }
    p.send(encodeAck(4), tid);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(files['four.bin']));
    expect(await endOf('four.bin', p)).toMatchObject({ result: 'ok' });
  });

  it('ignores an ACK for a block not yet sent and garbage from the client', async () => {
    const p = await peer();
    p.send(rrq('four.bin'), srv.port);
    const first = await p.recv();
    const tid = first.rinfo.port;
    p.send(encodeAck(3), tid);
    p.send(encodeAck(65535), tid);
    p.send(Buffer.from([0, 9, 1]), tid);
    p.send(Buffer.from([0]), tid);
    expect(await p.drain(TIMEOUT / 2)).toEqual([]);
    p.send(encodeAck(1), tid);
    expectData(await p.recv(), 2);
    p.send(encodeError(0, 'done'), tid);
  });
});

describe('refusals', () => {
  it('refuses writes with ERROR 2', async () => {
    const p = await peer();
    p.send(encodeRequest('wrq', 'four.bin', 'octet'), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 2 });
    p.send(encodeRequest('wrq', 'new-file', 'octet', [['tsize', '10']]), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 2 });
  });

  it.each(['../etc/passwd', '..\\..\\x', '/../x', 'a/../../x', '\\..\\four.bin'])('refuses traversal %j with ERROR 2', async (name) => {
    const p = await peer();
    p.send(rrq(name), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 2 });
  });

  it.each([
    ['an absolute path outside', '/etc/passwd'],
    ['a name that is not UTF-8', Buffer.from([0x66, 0xff, 0xfe])],
    ['an over-long name', 'a/'.repeat(400)],
    ['an empty name', ''],
    ['a directory', '/'],
  ])('refuses %s with ERROR 1', async (_label, name) => {
    const p = await peer();
    p.send(rrq(name), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 1 });
  });

  it('treats bytes after a NUL in the name as the mode, and refuses', async () => {
    const p = await peer();
    p.send(Buffer.concat([Buffer.from([0, 1]), Buffer.from('four.bin\0../../etc/passwd\0octet\0')]), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 4 });
  });

  it('answers unknown opcodes and malformed requests with ERROR 4, ignores strays', async () => {
    const p = await peer();
    p.send(Buffer.from([0, 9, 1, 2, 3]), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 4 });
    p.send(Buffer.from([0, 1, 0x66]), srv.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'error', code: 4 });
    for (const stray of [Buffer.alloc(0), Buffer.from([1]), encodeAck(1), encodeError(1, 'x'), Buffer.from([0, 3, 0, 1, 5])]) {
      p.send(stray, srv.port);
    }
    expect(await p.drain(100)).toEqual([]);
  });

  it('serves backslash and leading-slash names like MAAS firmware sends them', async () => {
    const p = await peer();
    const { data } = await rawFetch(p, srv.port, rrq('\\four.bin'));
    expect(sha256(data)).toBe(sha256(files['four.bin']));
  });
});
