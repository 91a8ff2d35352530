import { describe, expect, it } from 'vitest';
import { BlockSource, READ_AHEAD } from './blocks.js';
import type { TftpFile } from './files.js';

function memFile(data: Buffer): TftpFile & { reads: number } {
  const f = {
    size: data.length,
    reads: 0,
    read: async (buffer: Buffer, position: number) => {
      f.reads++;
      // Short reads on purpose: the source must loop.
      return data.copy(buffer, 0, position, Math.min(data.length, position + Math.min(buffer.length, 1000)));
    },
    close: async () => undefined,
  };
  return f;
}

/** Block n as the transfer gets it: copied out of the source. */
function block(s: BlockSource, n: number, blksize = 512): Buffer {
  const out = Buffer.alloc(blksize);
  return out.subarray(0, s.copyBlock(n, out, 0));
}

const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));

describe('BlockSource', () => {
  it('cuts an octet file into blocks, the last one short', async () => {
    const s = new BlockSource(memFile(data), 512, false);
    expect(s.lastBlock).toBe(10);
    await s.load(1, 4);
    expect(block(s, 1)).toEqual(data.subarray(0, 512));
    expect(block(s, 4)).toEqual(data.subarray(1536, 2048));
    expect(s.has(5, 10)).toBe(true); // read ahead
    expect(block(s, 10)).toEqual(data.subarray(4608));
    expect(s.bytesThrough(10)).toBe(5000);
    expect(s.bytesThrough(3)).toBe(1536);
  });

  it('ends a file of whole blocks with an empty block', async () => {
    const s = new BlockSource(memFile(data.subarray(0, 1024)), 512, false);
    expect(s.lastBlock).toBe(3);
    await s.load(3, 3);
    expect(block(s, 3).length).toBe(0);
    const empty = new BlockSource(memFile(Buffer.alloc(0)), 512, false);
    expect(empty.lastBlock).toBe(1);
    await empty.load(1, 1);
    expect(block(empty, 1).length).toBe(0);
  });

  it('reads ahead in large chunks rather than per block', async () => {
    const big = Buffer.alloc(READ_AHEAD * 3);
    const f = memFile(big);
    const s = new BlockSource(f, 512, false);
    for (let b = 1; b <= s.lastBlock!; b++) if (!s.has(b, b)) await s.load(b, b);
    // 1000-byte reads from memFile: about size/1000 calls; one per block would be 768.
    expect(f.reads).toBeLessThan((big.length / 1000) * 1.1);
  });

  it('refuses to go back before released blocks', async () => {
    const s = new BlockSource(memFile(Buffer.alloc(READ_AHEAD * 2)), 512, false);
    await s.load(1, 1);
    await s.load(300, 300);
    await expect(s.load(1, 1)).rejects.toThrow(/released/);
  });

  it('fails when the file shrinks below its announced size', async () => {
    const f = memFile(data);
    const s = new BlockSource({ ...f, size: 6000 }, 512, false);
    await expect(s.load(1, 12)).rejects.toThrow(/shrank/);
  });

  it('converts netascii and learns the length at end of file', async () => {
    const text = Buffer.from('line\n'.repeat(300)); // 1500 bytes -> 1800 converted
    const s = new BlockSource(memFile(text), 512, true);
    expect(s.lastBlock).toBeUndefined();
    await s.load(1, 2);
    expect(block(s, 1).toString('latin1', 0, 12)).toBe('line\r\nline\r\n');
    await s.load(3, 4);
    expect(s.lastBlock).toBe(4);
    expect(block(s, 4).length).toBe(1800 - 3 * 512);
    expect(s.bytesThrough(4)).toBe(1800);
  });
});
