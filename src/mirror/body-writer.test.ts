import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SizeMismatchError } from '../errors.js';
import { syntheticBytes } from '../demo-upstream/bytes.js';
import { BodyWriter } from './body-writer.js';
import { HashPool } from './hash-pool.js';

const pool = new HashPool(2);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-body-'));
});
afterAll(async () => {
  await pool.close();
  await rm(dir, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Cuts bytes into chunks of the given sizes, cycling through them. */
function chunks(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, bytes.length - at);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

describe('BodyWriter', () => {
  it('writes and hashes bodies whose chunks straddle batch boundaries', async () => {
    for (const [name, size, sizes] of [
      ['empty', 0, [1]],
      ['small', 5_000, [1, 7, 4096]],
      ['exact', 1 << 20, [65_536]],
      ['odd', (3 << 20) + 17, [1, 65_536, (1 << 20) + 3, 999_999]],
      ['huge chunks', 5 << 20, [3 << 20]],
    ] as const) {
      const bytes = syntheticBytes(name, size);
      const path = join(dir, `${name}.part`);
      const hash = pool.create();
      let counted = 0;
      const w = new BodyWriter({ path, start: 0, limit: size, hash, onBytes: (n) => (counted += n) });
      await pipeline(Readable.from(chunks(bytes, [...sizes])), w);
      expect(w.received, name).toBe(size);
      expect(counted, name).toBe(size);
      expect(sha(await readFile(path)), name).toBe(sha(bytes));
      expect(await hash.digest(), name).toBe(sha(bytes));
    }
  });

  it('refuses one byte more than the limit', async () => {
    const hash = pool.create();
    const w = new BodyWriter({ path: join(dir, 'long.part'), start: 0, limit: 100_000, hash, onBytes: () => undefined });
    await expect(pipeline(Readable.from(chunks(syntheticBytes('long', 100_001), [65_536])), w)).rejects.toBeInstanceOf(SizeMismatchError);
    hash.drop();
  });

  it('keeps on disk what arrived before the body broke off, so a resume asks only for the rest', async () => {
    const bytes = syntheticBytes('cut', 300_000);
    const path = join(dir, 'cut.part');
    const hash = pool.create();
    const w = new BodyWriter({ path, start: 0, limit: 1 << 20, hash, onBytes: () => undefined });
    async function* cutShort() {
      yield bytes.subarray(0, 200_000);
      yield bytes.subarray(200_000);
      await new Promise((r) => setTimeout(r, 20));
      throw new Error('connection reset');
    }
    await expect(pipeline(Readable.from(cutShort()), w)).rejects.toThrow('connection reset');
    await w.settled();
    hash.drop();
    expect(sha(await readFile(path))).toBe(sha(bytes));
  });

  it('continues a partial file from its end, hashing the kept prefix first', async () => {
    const bytes = syntheticBytes('resume', (2 << 20) + 5);
    const path = join(dir, 'resume.part');
    await writeFile(path, bytes.subarray(0, 700_000));
    const hash = pool.create();
    const w = new BodyWriter({
      path,
      start: 700_000,
      limit: bytes.length - 700_000,
      hash,
      onBytes: () => undefined,
      prepare: () => hash.updateFromFile(path, 700_000),
    });
    await pipeline(Readable.from(chunks(bytes.subarray(700_000), [65_536])), w);
    expect(w.received).toBe(bytes.length - 700_000);
    expect(sha(await readFile(path))).toBe(sha(bytes));
    expect(await hash.digest()).toBe(sha(bytes));
  });
});
