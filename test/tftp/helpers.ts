import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { decodePacket, encodeAck, type Packet } from '../../src/tftp/packet.js';
import { FILES_MODULE, TftpServer, openFromDirectory, type TftpServerOptions, type TransferEndEvent } from '../../src/tftp/index.js';

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A directory of test files; `files` maps name to content. */
export async function makeTree(files: Record<string, Buffer>): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-tftp-'));
  for (const [name, data] of Object.entries(files)) {
    const path = join(dir, name);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Random content, so a misplaced or repeated block cannot match by luck. */
export const random = (size: number) => randomBytes(size);

export interface Running {
  server: TftpServer;
  port: number;
  ends: TransferEndEvent[];
  stop: () => Promise<void>;
}

/**
 * Worker threads for the servers tests start (tftp.workers); MM_TFTP_TEST_WORKERS=2 runs a whole
 * suite through them. A test passing `workers` itself chooses.
 */
export const TEST_WORKERS = Number(process.env.MM_TFTP_TEST_WORKERS ?? 1);

/** The `workers` option serving `dir` from `count` worker threads. */
export function directoryWorkers(dir: string, count: number): TftpServerOptions['workers'] {
  return { count, opener: { module: FILES_MODULE, name: 'directoryWorkerOpener', data: dir } };
}

export async function startServer(
  dir: string,
  options: Partial<TftpServerOptions> = {},
  host = '127.0.0.1',
): Promise<Running> {
  const server = new TftpServer({
    listen: [{ host, port: 0 }],
    open: openFromDirectory(dir),
    workers: directoryWorkers(dir, TEST_WORKERS),
    ...options,
  });
  const ends: TransferEndEvent[] = [];
  server.on('transferEnd', (e) => ends.push(e));
  const [bound] = await server.start();
  if (!bound) throw new Error('server bound nothing');
  return { server, port: bound.port, ends, stop: () => server.stop({ deadlineMs: 100 }) };
}

export interface Received {
  msg: Buffer;
  rinfo: RemoteInfo;
  packet: Packet;
}

/** A raw UDP endpoint for scripting a client packet by packet. */
export class UdpPeer {
  private queue: Received[] = [];
  private waiter: (() => void) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('message', (msg, rinfo) => {
      this.queue.push({ msg, rinfo, packet: decodePacket(msg) });
      this.waiter?.();
    });
  }

  static async open(address = '127.0.0.1'): Promise<UdpPeer> {
    const socket = createSocket(address.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve) => socket.bind({ address, port: 0 }, resolve));
    return new UdpPeer(socket);
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(buf: Buffer, port: number, address = '127.0.0.1'): void {
    this.socket.send(buf, port, address);
  }

  /** The next packet, or a rejection after timeoutMs. */
  async recv(timeoutMs = 2000): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no packet within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queue.shift() as Received;
  }

  /** Packets that arrive within ms (all of them, possibly none). */
  async drain(ms: number): Promise<Received[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.splice(0);
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}

/** Runs a real client; rejects (so the test fails) when the binary is missing or fails. */
export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

export async function tmpOut(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mm-tftp-out-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Completes a lock-step read over a UdpPeer, strictly: every packet must be
 * the expected next one. For scripted tests that then go on with the peer.
 */
export async function rawFetch(
  peer: UdpPeer,
  port: number,
  request: Buffer,
  address = '127.0.0.1',
): Promise<{ data: Buffer; oack: Record<string, string> | undefined }> {
  peer.send(request, port, address);
  const chunks: Buffer[] = [];
  let oack: Record<string, string> | undefined;
  let blksize = 512;
  for (let block = 1; ; block++) {
    const r = await peer.recv();
    if (r.packet.op === 'oack' && block === 1 && oack === undefined) {
      oack = Object.fromEntries(r.packet.options);
      blksize = Number(oack.blksize ?? 512);
      peer.send(encodeAck(0), r.rinfo.port, address);
      block--;
      continue;
    }
    if (r.packet.op !== 'data' || r.packet.block !== (block & 0xffff)) {
      throw new Error(`expected DATA ${block}, got ${JSON.stringify(r.packet)}`);
    }
    chunks.push(Buffer.from(r.packet.data));
    peer.send(encodeAck(block), r.rinfo.port, address);
    if (r.packet.data.length < blksize) return { data: Buffer.concat(chunks), oack };
  }
}

/**
 * For a test file: its tree of files, and servers, peers and anything else
 * registered in `cleanups`, all stopped after each test (newest first).
 */
export function tftpFixture(files: Record<string, Buffer>) {
  let tree: Awaited<ReturnType<typeof makeTree>>;
  const cleanups: (() => Promise<void> | void)[] = [];
  beforeAll(async () => {
    tree = await makeTree(files);
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  afterAll(() => tree.cleanup());
  return {
    get dir(): string {
      return tree.dir;
    },
    cleanups,
    async server(options: Partial<TftpServerOptions> = {}, host?: string): Promise<Running> {
      const s = await startServer(tree.dir, options, host);
      cleanups.push(() => s.stop());
      return s;
    },
    async peer(address?: string): Promise<UdpPeer> {
      const p = await UdpPeer.open(address);
      cleanups.push(() => p.close());
      return p;
    },
  };
}
