import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HashPool, type PooledHash } from './hash-pool.js';
import { syntheticBytes } from '../demo-upstream/bytes.js';

const pool = new HashPool(2);
afterAll(() => pool.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Hands bytes over the way BodyWriter does: copied into pool buffers, each transferred to the worker. */
async function feed(h: PooledHash, bytes: Buffer, step = 65_536): Promise<void> {
  for (let o = 0; o < bytes.length; ) {
    const ab = h.buffer();
    const n = Math.min(step, ab.byteLength, bytes.length - o);
    new Uint8Array(ab).set(bytes.subarray(o, o + n));
    await h.update(ab, n);
    o += n;
  }
}

describe('HashPool', () => {
  it('hashes streamed chunks off the main thread, many at once', async () => {
    const inputs = [0, 1, 1000, 3 << 20, (1 << 20) + 17].map((n, i) => syntheticBytes(`h${i}`, n));
    const digests = await Promise.all(
      inputs.map(async (buf) => {
        const h = pool.create();
        await feed(h, buf, buf.length % 2 === 0 ? 65_536 : 1 << 20);
        return h.digest();
      }),
    );
    expect(digests).toEqual(inputs.map(sha));
  });

  it('reuses the buffers the workers send back, so memory stays flat', async () => {
    const h = pool.create();
    await feed(h, syntheticBytes('flat', 16 << 20), 1 << 20);
    await h.digest();
    const spare = pool.spare.length;
    expect(spare).toBeGreaterThan(0);
    const again = pool.create();
    await feed(again, syntheticBytes('flat2', 8 << 20), 1 << 20);
    await again.digest();
    expect(pool.spare.length).toBeLessThanOrEqual(Math.max(spare, 8));
  });

  it('continues from the prefix of a file (a resumed download)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mm-hash-'));
    try {
      const all = syntheticBytes('resume', 300_000);
      await writeFile(join(dir, 'part'), all.subarray(0, 120_000));
      const h = pool.create();
      await h.updateFromFile(join(dir, 'part'), 120_000);
      await feed(h, all.subarray(120_000));
      expect(await h.digest()).toBe(sha(all));
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('does not inherit the parent process flags (a CommonJS worker under --input-type=module)', async () => {
    const { execFile } = await import('node:child_process');
    const url = new URL('./hash-pool.ts', import.meta.url).href;
    const script = `import { HashPool } from ${JSON.stringify(url)}; const p = new HashPool(1); const h = p.create(); const ab = h.buffer(); new Uint8Array(ab).set(Buffer.from('abc')); h.update(ab, 3); console.log(await h.digest()); await p.close();`;
    const out = await new Promise<string>((ok, ko) =>
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (err, stdout) => (err ? ko(err) : ok(stdout))),
    );
    expect(out.trim()).toBe(sha(Buffer.from('abc')));
  });
});
