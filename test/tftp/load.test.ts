import { describe, expect, it } from 'vitest';
import { tftpGet } from '../../src/tftp/client.js';
import { prng } from '../helpers/prng.js';
import { encodeAck, encodeError, encodeRequest } from '../../src/tftp/packet.js';
import { tftpFixture, random, sha256, until, type UdpPeer } from './helpers.js';

const files = {
  'grubx64.efi': random(150_000),
  'item.bin': random(3 * 1024 * 1024 + 11),
  'a/b/c.cfg': Buffer.from('kernel\n'),
};
const { server, peer } = tftpFixture(files);

describe('concurrency', () => {
  it('serves 100 concurrent transfers with the right bytes', async () => {
    const s = await server({ maxTransfersPerClient: 100 });
    const variants = [{}, { blksize: 1468 }, { blksize: 1468, windowsize: 16, tsize: true }, { blksize: 8192, windowsize: 4 }];
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => {
        const file = i % 5 === 0 ? 'item.bin' : 'grubx64.efi';
        return tftpGet({ host: '127.0.0.1', port: s.port, file, ...variants[i % variants.length] }).then((r) => ({ file, r }));
      }),
    );
    for (const { file, r } of results) expect(r.sha256).toBe(sha256(files[file as keyof typeof files]));
    await until(() => s.ends.length === 100);
    expect(s.ends.every((e) => e.result === 'ok')).toBe(true);
    expect(s.server.activeTransfers).toBe(0);
  });
});

describe('limits', () => {
  /**
   * Starts a transfer, acknowledges DATA 1 and leaves it waiting for ACK 2;
   * returns its TID. Acknowledged, it is a client's real transfer, which no new
   * request may evict.
   */
  async function stall(p: UdpPeer, port: number): Promise<number> {
    p.send(encodeRequest('rrq', 'item.bin', 'octet'), port);
    const r = await p.recv();
    expect(r.packet).toMatchObject({ op: 'data', block: 1 });
    p.send(encodeAck(1), r.rinfo.port);
    expect((await p.recv()).packet).toMatchObject({ op: 'data', block: 2 });
    return r.rinfo.port;
  }

  it('refuses a client beyond its own limit with ERROR 0, not others', async () => {
    const s = await server({ maxTransfersPerClient: 2, timeoutMs: 10_000 });
    const [a, b, c] = [await peer(), await peer(), await peer()];
    const tidA = await stall(a, s.port);
    await stall(b, s.port);
    c.send(encodeRequest('rrq', 'item.bin', 'octet'), s.port);
    expect((await c.recv()).packet).toMatchObject({ op: 'error', code: 0, message: 'server busy, try again later' });
    expect(s.ends.at(-1)).toMatchObject({ result: 'busy', client: { address: '127.0.0.1' } });

    const other = await peer('127.0.0.2');
    await stall(other, s.port);
    expect(s.server.activeTransfers).toBe(3);

    // A slot frees when a transfer ends; the client is then served again.
    a.send(encodeError(0, 'bye'), tidA);
    await until(() => s.server.activeTransfers === 2);
    await stall(c, s.port);
  });

  it('refuses everyone beyond the global limit', async () => {
    const s = await server({ maxTransfers: 3, timeoutMs: 10_000 });
    for (const address of ['127.0.0.1', '127.0.0.2', '127.0.0.3']) await stall(await peer(address), s.port);
    const late = await peer('127.0.0.4');
    late.send(encodeRequest('rrq', 'grubx64.efi', 'octet'), s.port);
    expect((await late.recv()).packet).toMatchObject({ op: 'error', code: 0 });
    expect(s.server.activeTransfers).toBe(3);
  });
});

describe('fuzz', () => {
  it('survives 10,000 random and malformed packets and still serves correctly', async () => {
    const seed = Date.now() % 1_000_000;
    const rnd = prng(seed);
    const int = (n: number) => Math.floor(rnd() * n);
    const bytes = (n: number) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    };
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
    const names = ['item.bin', 'grubx64.efi', 'a/b/c.cfg', 'missing', '../x', '\\a\\b\\c.cfg', '/', ''];
    const optionNames = ['blksize', 'tsize', 'timeout', 'windowsize', 'BLKSIZE', 'x', ''];
    const optionValues = ['0', '1', '7', '8', '512', '65464', '65465', '99999999999', '-1', 'abc', '', '\xff\xfe'];
    const timeoutValues = ['0', '1', '256', '99999999999', 'abc', ''];

    const generators: (() => Buffer)[] = [
      () => Buffer.alloc(0),
      () => bytes(1),
      () => bytes(2),
      () => Buffer.concat([Buffer.from([0, int(8)]), bytes(int(600))]),
      () => Buffer.concat([Buffer.from([int(256), int(256)]), bytes(int(100))]),
      () => bytes(60_000 + int(5000)),
      // Requests with random, truncated or value-less options.
      () => {
        const opts: [string, string][] = Array.from({ length: int(5) }, () => {
          const name = pick(optionNames);
          // A valid client timeout of N s holds a stalled transfer for N x (retries + 1) s; keep N at 1.
          return [name, pick(name === 'timeout' ? timeoutValues : optionValues)];
        });
        const full = encodeRequest(rnd() < 0.9 ? 'rrq' : 'wrq', pick(names), pick(['octet', 'netascii', 'OCTET', 'mail', '']), opts);
        return rnd() < 0.5 ? full.subarray(0, int(full.length + 1)) : full;
      },
      () => Buffer.concat([Buffer.from([0, 1]), bytes(int(40)), Buffer.from('\0octet\0')]),
      () => Buffer.concat([Buffer.from([0, 1]), Buffer.from('item.bin\0octet\0blksize\0')]),
      () => Buffer.concat([Buffer.from([0, 1]), Buffer.from('x'.repeat(2000)), Buffer.from('\0octet\0')]),
      () => encodeAck(int(65536)),
      () => encodeError(int(10), 'fuzz'),
      () => Buffer.concat([Buffer.from([0, 3]), bytes(int(1000))]),
    ];

    const s = await server({ timeoutMs: 400, retries: 2, maxTransfers: 200 });
    const fuzzers = await Promise.all(['127.0.0.1', '127.0.0.1', '127.0.0.6', '127.0.0.7'].map((a) => peer(a)));
    const owner = await peer('127.0.0.8');
    const tids: number[] = [];

    // A real transfer keeps running the whole time; fuzz must not stall it.
    const legit = tftpGet({ host: '127.0.0.1', port: s.port, file: 'item.bin', localAddress: '127.0.0.5' }).then(
      (r) => r.sha256,
      (e: unknown) => String(e),
    );

    for (let i = 0; i < 10_000; i++) {
      if (i % 500 === 0) {
        // Fresh transfer ports to aim at: they stall (the owner never ACKs) and time out.
        owner.send(encodeRequest('rrq', 'item.bin', 'octet'), s.port);
        const r = await owner.recv().catch(() => undefined);
        if (r) tids.push(r.rinfo.port);
      }
      const packet = pick(generators)();
      const target = rnd() < 0.5 || tids.length === 0 ? s.port : pick(tids);
      // Mostly strangers; sometimes the transfer's own client sends the garbage.
      const from = target !== s.port && rnd() < 0.2 ? owner : pick(fuzzers);
      from.send(packet, target);
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 1));
    }

    expect(await legit, `seed ${seed}`).toBe(sha256(files['item.bin']));
    const after = await tftpGet({ host: '127.0.0.1', port: s.port, file: 'item.bin', blksize: 1468, windowsize: 16, localAddress: '127.0.0.9' });
    expect(after.sha256, `seed ${seed}`).toBe(sha256(files['item.bin']));
    expect(s.ends.filter((e) => e.result === 'error'), `seed ${seed}`).toEqual([]);
    // The fuzz did reach both kinds of socket: strangers got ERROR 4 from the listener, and a transfer's
    // own client (the only one its connected socket hears) ended some of them with its random ERRORs.
    const replies = (await Promise.all(fuzzers.map((f) => f.drain(0)))).flat();
    const codes = new Set(replies.map((r) => (r.packet.op === 'error' ? r.packet.code : -1)));
    expect(codes.has(4), `seed ${seed}`).toBe(true);
    expect(codes.has(5), `seed ${seed}: strangers reached a transfer socket`).toBe(false);
    expect(s.ends.some((e) => e.result === 'aborted_by_client'), `seed ${seed}`).toBe(true);
    // Every fuzz transfer is eventually freed.
    await until(() => s.server.activeTransfers === 0, 8000);
  });
});
