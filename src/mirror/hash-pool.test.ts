import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HashPool } from './hash-pool.js';
import { syntheticBytes } from '../fixture/bytes.js';

const pool = new HashPool(2);
afterAll(() => pool.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('HashPool', () => {
  it('hashes streamed chunks off the main thread, many at once', async () => {
    const inputs = [0, 1, 1000, 3 << 20, (1 << 20) + 17].map((n, i) => syntheticBytes(`h${i}`, n));
    const digests = await Promise.all(
      inputs.map(async (buf) => {
        const h = pool.create();
        for (let o = 0; o < buf.length; o += 65_536) h.update(buf.subarray(o, o + 65_536));
        return h.digest();
      }),
    );
    expect(digests).toEqual(inputs.map(sha));
  });

  it('continues from the prefix of a file (a resumed download)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mm-hash-'));
    try {
      const all = syntheticBytes('resume', 300_000);
      await writeFile(join(dir, 'part'), all.subarray(0, 120_000));
      const h = pool.create();
      await h.updateFromFile(join(dir, 'part'), 120_000);
      h.update(all.subarray(120_000));
      expect(await h.digest()).toBe(sha(all));
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('does not inherit the parent process flags (a CommonJS worker under --input-type=module)', async () => {
    const { execFile } = await import('node:child_process');
    const url = new URL('./hash-pool.ts', import.meta.url).href;
    const script = `import { HashPool } from ${JSON.stringify(url)}; const p = new HashPool(1); const h = p.create(); h.update(Buffer.from('abc')); console.log(await h.digest()); await p.close();`;
    const out = await new Promise<string>((ok, ko) =>
      execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], (err, stdout) => (err ? ko(err) : ok(stdout))),
    );
    expect(out.trim()).toBe(sha(Buffer.from('abc')));
  });
});
