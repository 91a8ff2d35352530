import { describe, expect, it } from 'vitest';
import { tftpGet } from '../../src/tftp/client.js';
import { directoryWorkers, random, sha256, tftpFixture, until } from './helpers.js';

const files = { 'a.bin': random(300_000) };
const fx = tftpFixture(files);

describe('tftp.workers', () => {
  it('smoke', async () => {
    const s = await fx.server({ workers: directoryWorkers(fx.dir, 2) });
    const got = await Promise.all(Array.from({ length: 8 }, () => tftpGet({ host: '127.0.0.1', port: s.port, file: 'a.bin', blksize: 1468 })));
    for (const g of got) expect(g.sha256).toBe(sha256(files['a.bin']));
    await until(() => s.ends.length === 8);
    console.log(s.ends.map((e) => e.result), s.server.bytesSent);
  });
});
