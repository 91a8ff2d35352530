import type { RemoteInfo, Socket } from 'node:dgram';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from '../../src/log.js';
import { READ_AHEAD } from '../../src/tftp/blocks.js';
import { tftpGet } from '../../src/tftp/client.js';
import { TftpServer, openFromDirectory, type TftpFile, type TftpOpen, type TransferEndEvent } from '../../src/tftp/index.js';
import { encodeAck, encodeRequest } from '../../src/tftp/packet.js';
import { ReadTransfer, type TransferResult } from '../../src/tftp/transfer.js';
import { bindSocket, connectSocket, createUdpSocket } from '../../src/tftp/udp.js';
import { random, sha256, tftpFixture, until } from './helpers.js';

/** What happens when the server's own side fails: the kernel refuses, a send throws, the disk is slow. */

const files = { 'small.bin': random(3000), 'big.bin': random(3 * 128 * 1024 + 100) };
const tree = tftpFixture(files);
const { cleanups, peer } = tree;

/** UDP sockets open in this process: a leaked transfer socket shows here. */
const udpHandles = () => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;

/** Opens files from the test tree, counting opens and closes. */
function countingOpen(wrap: (f: TftpFile) => TftpFile = (f) => f): TftpOpen & { opened: number; closed: number } {
  const inner = openFromDirectory(tree.dir);
  const open = Object.assign(
    async (name: string, client: { address: string; port: number }) => {
      const f = await inner(name, client);
      if (!f) return undefined;
      open.opened++;
      const wrapped = wrap(f);
      return {
        size: wrapped.size,
        read: (buffer: Buffer, position: number) => wrapped.read(buffer, position),
        close: () => {
          open.closed++;
          return wrapped.close();
        },
      };
    },
    { opened: 0, closed: 0 },
  );
  return open;
}

async function startServer(open: TftpOpen, timeoutMs: number, retries = 5, logger = silentLogger(), minRtoMs?: number) {
  const server = new TftpServer({ listen: [{ host: '127.0.0.1', port: 0 }], open, timeoutMs, retries, logger, minRtoMs });
  const ends: TransferEndEvent[] = [];
  server.on('transferEnd', (e) => ends.push(e));
  const [bound] = await server.start();
  cleanups.push(() => server.stop({ deadlineMs: 0 }));
  return { server, port: bound!.port, ends };
}

describe('transfer socket that cannot be connected', () => {
  it('fails only that request: socket and file closed, counted as an error, the next client served', async () => {
    const TIMEOUT = 100;
    const open = countingOpen();
    const lines: { msg: string; err?: { code?: string } }[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
        done();
      },
    });
    const s = await startServer(open, TIMEOUT, 5, createLogger({ level: 'debug', destination }));
    const before = udpHandles();

    // No real client can send from 255.255.255.255, and connecting a socket there is refused by the
    // kernel (EACCES without SO_BROADCAST), so the request is handed to the real listening socket as
    // if it came from there; the transfer socket and its connect() are real.
    const listener = s.server['sockets'][0]!.socket as Socket;
    const request = encodeRequest('rrq', 'small.bin', 'octet', [['blksize', '1024']]);
    const rinfo: RemoteInfo = { address: '255.255.255.255', family: 'IPv4', port: 6969, size: request.length };
    listener.emit('message', request, rinfo);

    await until(() => s.ends.length === 1);
    expect(s.ends[0]).toMatchObject({ result: 'error', file: 'small.bin', client: { address: '255.255.255.255' } });
    expect(s.server.activeTransfers).toBe(0);
    expect([open.opened, open.closed]).toEqual([1, 1]);
    // Refused at connect(), before any transfer began.
    expect(lines.find((l) => /transfer socket/.test(l.msg) && l.err?.code === 'EACCES')).toBeDefined();
    expect(lines.find((l) => /TFTP transfer (started|failed)/.test(l.msg))).toBeUndefined();
    await until(() => udpHandles() === before);
    // Long enough for any timer the failed request left behind to fire (and, unhandled, end the process).
    await new Promise((r) => setTimeout(r, TIMEOUT * 3));
    expect(s.ends).toHaveLength(1);

    const got = await tftpGet({ host: '127.0.0.1', port: s.port, file: 'small.bin', blksize: 1024 });
    expect(got.sha256).toBe(sha256(files['small.bin']));
    await until(() => s.ends.length === 2);
    expect(s.ends[1]).toMatchObject({ result: 'ok' });
    expect([open.opened, open.closed]).toEqual([2, 2]);
  });
});

describe('ReadTransfer whose sends fail', () => {
  function memFile(data: Buffer): TftpFile & { closed: number } {
    const f = {
      size: data.length,
      closed: 0,
      read: async (buffer: Buffer, position: number) => data.copy(buffer, 0, position, position + buffer.length),
      close: async () => {
        f.closed++;
      },
    };
    return f;
  }

  function transferOn(socket: Socket, file: TftpFile, timeoutMs: number) {
    const ends: TransferResult[] = [];
    const transfer = new ReadTransfer({
      socket,
      peer: { address: '127.0.0.1', port: 9 },
      file,
      netascii: false,
      blksize: 512,
      windowsize: 1,
      timeoutMs,
      retries: 5,
      firstAckTimeoutMs: 3000,
      firstAckResends: 2,
      accepted: [['blksize', '512']],
      logger: silentLogger(),
      onSent: () => undefined,
      onEnd: (e) => ends.push(e.result),
    });
    const closed = new Promise<void>((r) => socket.once('close', r));
    return { transfer, ends, closed };
  }

  it('ends as an error when start() cannot send, leaving no timer, socket or file open', async () => {
    // Bound but never connected: every send without a destination throws ERR_SOCKET_BAD_PORT.
    const socket = createUdpSocket('udp4');
    await bindSocket(socket, '127.0.0.1', 0);
    const file = memFile(random(2000));
    const t = transferOn(socket, file, 50);
    expect(() => t.transfer.start()).not.toThrow();
    expect(t.ends).toEqual(['error']);
    await t.closed;
    expect(file.closed).toBe(1);
    // Its timer is cleared: nothing else ends or throws later.
    await new Promise((r) => setTimeout(r, 200));
    expect(t.ends).toEqual(['error']);
  });

  it('ends as an error when a resend from the timer throws, instead of throwing in the timer', async () => {
    const p = await peer();
    const socket = createUdpSocket('udp4');
    await bindSocket(socket, '127.0.0.1', 0);
    await connectSocket(socket, { address: '127.0.0.1', port: p.port });
    const file = memFile(random(2000));
    const t = transferOn(socket, file, 50);
    t.transfer.start();
    expect((await p.recv()).packet).toMatchObject({ op: 'oack' });
    // The socket loses its peer, so the OACK resend on the next timeout throws.
    socket.disconnect();
    await until(() => t.ends.length > 0, 2000);
    expect(t.ends).toEqual(['error']);
    await t.closed;
    expect(file.closed).toBe(1);
  });
});

describe('retries while the next window is read from disk', () => {
  it('gives the loading phase its own retries, not what the previous window used up', async () => {
    const TIMEOUT = 300;
    const BLKSIZE = 8192;
    // Windows of 8 blocks (64 KiB); the first read-ahead holds blocks 1-16, so block 17 must be read.
    const inMemory = READ_AHEAD / BLKSIZE;
    // Reads beyond the first read-ahead wait until released.
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const open = countingOpen((f) => ({
      ...f,
      read: async (buffer, position) => {
        if (position >= READ_AHEAD) await gate;
        return f.read(buffer, position);
      },
    }));
    // The negotiated timer only (floor = timeout): the test counts whole timeouts.
    const s = await startServer(open, TIMEOUT, 2, silentLogger(), TIMEOUT);
    const p = await peer();
    p.send(encodeRequest('rrq', 'big.bin', 'octet', [['blksize', String(BLKSIZE)], ['windowsize', '8']]), s.port);
    const oack = await p.recv();
    expect(oack.packet).toMatchObject({ op: 'oack', options: [['blksize', '8192'], ['windowsize', '8']] });
    const tid = oack.rinfo.port;
    p.send(encodeAck(0), tid);
    for (let b = 1; b <= 8; b++) expect((await p.recv()).packet).toMatchObject({ op: 'data', block: b });
    p.send(encodeAck(8), tid);

    // The second window is resent twice, using up both retries, while we stay silent...
    const window = await p.drain(TIMEOUT * 2.5);
    expect(window.map((r) => (r.packet.op === 'data' ? r.packet.block : r.packet.op))).toContain(inMemory);
    expect(window.every((r) => r.packet.op === 'data')).toBe(true);
    // ...then acknowledged: the third has to be read first, which takes 1.5 timeouts. Reading gets
    // 3 timeouts of its own; with the second window's 2 carried over, it got only 1.
    p.send(encodeAck(inMemory), tid);
    setTimeout(release, TIMEOUT * 1.5);

    const next = await p.recv(TIMEOUT * 5);
    expect(next.packet).toMatchObject({ op: 'data', block: inMemory + 1 });
    release();
  });
});
