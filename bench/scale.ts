import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as openpgp from 'openpgp';
import { UpstreamServer } from '../src/demo-upstream/server.js';
import { syntheticBytes } from '../src/demo-upstream/bytes.js';
import { clearsign } from '../src/pgp/sign.js';
import { formatRfc2822 } from '../src/simplestreams/dates.js';
import { createHash } from 'node:crypto';
import type { IndexDocument, ProductsDocument } from '../src/simplestreams/types.js';
import { compiled, removeCompiled, round, table, type BenchRow } from './lib.js';

/** The stream sizes measured, in products (four files each): MM_SCALE_POINTS=1000,10000 picks some. */
export const DEFAULT_POINTS = [1000, 10_000, 50_000];

/** The targets, held at 10,000 products (40,000 files). */
const TARGET_AT = 10_000;
const TARGET_PLAN_MS = 2000;
const TARGET_NOOP_MS = 1000;
const TARGET_COLD_RSS_MB = 256;

export function scalePoints(env = process.env.MM_SCALE_POINTS): number[] {
  if (!env) return DEFAULT_POINTS;
  const points = env.split(',').map((p) => Number(p.trim()));
  if (points.some((p) => !Number.isInteger(p) || p < 1 || p > 1_000_000)) throw new Error(`MM_SCALE_POINTS must list product counts (1..1000000), got ${env}`);
  return points;
}

/**
 * How cost grows with the size of the stream: planning (a dry run: fetch, verify, flatten, filter,
 * plan), a cold sync and a no-op resync, for generated streams of 1,000, 10,000 and 50,000 products
 * with small synthetic items, with the peak RSS of each and the size of the products file the
 * snapshot publishes. Each row's note gives its cost per 1,000 products, so linear growth shows as
 * a flat figure across the points.
 */
export async function benchScale(sizes = scalePoints(), log = (l: string) => process.stderr.write(l + '\n')): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const n of sizes) {
    const dir = await mkdtemp(join(tmpdir(), 'mm-bench-scale-'));
    const server = new UpstreamServer({ root: join(dir, 'upstream') });
    try {
      log(`scale: generating ${n} products…`);
      const keyring = await generate(join(dir, 'upstream'), n, dir);
      const url = await server.start();
      const config = join(dir, 'config.yaml');
      await writeFile(config, JSON.stringify({ dataDir: join(dir, 'data'), sources: [{ name: 'scale', url, keyring }], download: { concurrency: 8 } }));
      log(`scale: ${n} products: plan, cold sync, no-op resync…`);
      const plan = await child(config, true);
      const cold = await child(config, false);
      const noop = await child(config, false);
      const published = await productsFiles(join(dir, 'data', 'current', 'streams', 'v1'));
      const perK = (ms: number) => `${round(ms / (n / 1000), 1)} ms per 1k products`;
      const at = n === TARGET_AT;
      rows.push(
        {
          group: 'scale',
          name: `plan (dry run), ${n} products`,
          value: plan.ms,
          unit: 'ms',
          ...(at ? { target: `< ${TARGET_PLAN_MS} ms`, pass: plan.ms < TARGET_PLAN_MS } : {}),
          note: `${perK(plan.ms)}; peak RSS ${round(plan.rssMb, 0)} MB`,
        },
        { group: 'scale', name: `cold sync, ${n} products (${n * 4} files)`, value: cold.ms, unit: 'ms', note: perK(cold.ms) },
        {
          group: 'scale',
          name: `cold sync peak RSS, ${n} products`,
          value: cold.rssMb,
          unit: 'MB',
          ...(at ? { target: `< ${TARGET_COLD_RSS_MB} MB`, pass: cold.rssMb < TARGET_COLD_RSS_MB } : {}),
          note: `${round(cold.rssMb / (n / 1000), 1)} MB per 1k products`,
        },
        {
          group: 'scale',
          name: `no-op resync, ${n} products`,
          value: noop.ms,
          unit: 'ms',
          ...(at ? { target: `< ${TARGET_NOOP_MS} ms`, pass: noop.ms < TARGET_NOOP_MS } : {}),
          note: `${perK(noop.ms)}; peak RSS ${round(noop.rssMb, 0)} MB`,
        },
        {
          group: 'scale',
          name: `published products file, ${n} products`,
          value: published.mb,
          unit: 'MB',
          note: `${round(published.mb / (n / 1000), 3)} MB per 1k products; ${published.files}`,
        },
      );
    } catch (err) {
      // One point failing (say, the machine ran out of memory at 50,000) keeps the others' rows.
      log(`scale: ${n} products failed: ${(err as Error).message}`);
      rows.push({ group: 'scale', name: `${n} products`, value: Number.NaN, unit: '', note: `failed: ${(err as Error).message}` });
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
  return rows;
}

/** Size of each products file the snapshot publishes (what a MAAS region downloads and parses), and the largest. */
async function productsFiles(dir: string): Promise<{ mb: number; files: string }> {
  const names = (await readdir(dir)).filter((n) => n !== 'index.json' && n.endsWith('.json'));
  const sizes = await Promise.all(names.map(async (n) => ({ n, mb: (await stat(join(dir, n))).size / 1e6 })));
  return { mb: Math.max(0, ...sizes.map((s) => s.mb)), files: sizes.map((s) => `${s.n} ${round(s.mb)} MB`).join(', ') };
}

/**
 * Products per generated products file. One file is held to METADATA_LIMITS.maxProducts (20,000)
 * and MAX_METADATA_BYTES (64 MiB, ~50,000 of these products), and a region parses each file whole:
 * a large stream is split by content id, as upstream splits its own.
 */
export const PRODUCTS_PER_FILE = 10_000;

export async function generate(root: string, n: number, dir: string): Promise<string> {
  const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'scale' }], format: 'object' });
  const keyring = join(dir, 'scale.gpg');
  await writeFile(keyring, privateKey.toPublic().write());
  const updated = formatRfc2822(new Date());
  await mkdir(join(root, 'streams/v1'), { recursive: true });
  const index: IndexDocument = { format: 'index:1.0', updated, index: {} };
  for (let first = 0, k = 0; first < n; first += PRODUCTS_PER_FILE, k++) {
    const contentId = k === 0 ? 'com.example:scale:v3:download' : `com.example:scale:v3:download-${k}`;
    const doc: ProductsDocument = { content_id: contentId, datatype: 'image-ids', format: 'products:1.0', updated, products: {} };
    for (let i = first; i < Math.min(n, first + PRODUCTS_PER_FILE); i++) {
      const items: ProductsDocument['products'][string]['versions'][string]['items'] = {};
      // The four items MAAS needs of a version (kernel, initrd, root image, manifest).
      for (const ftype of ['boot-kernel', 'boot-initrd', 'squashfs', 'manifest']) {
        const path = `p${i}/20260101/${ftype}`;
        const bytes = syntheticBytes(path, 256);
        await mkdir(dirname(join(root, path)), { recursive: true });
        await writeFile(join(root, path), bytes);
        items[ftype] = { ftype, path, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
      }
      doc.products[`com.example.scale:v3:boot:${i}:amd64:ga`] = {
        // The product fields MAAS reads, in the shape of the real stable stream.
        arch: 'amd64', os: 'ubuntu', release: `r${i}`, release_title: `${i}.04 LTS`, label: 'stable', version: `${i}.04`,
        subarch: 'ga', subarches: 'generic,ga', kflavor: 'generic', krel: `r${i}`, support_eol: '2036-04-30',
        versions: { '20260101': { items } },
      };
    }
    const path = `streams/v1/${contentId}.sjson`;
    await writeFile(join(root, path), await clearsign(JSON.stringify(doc, null, 1) + '\n', privateKey));
    index.index[contentId] = { datatype: 'image-ids', format: 'products:1.0', path, products: Object.keys(doc.products), updated };
  }
  await writeFile(join(root, 'streams/v1/index.sjson'), await clearsign(JSON.stringify(index, null, 1) + '\n', privateKey));
  return keyring;
}

async function child(configFile: string, dryRun: boolean): Promise<{ ms: number; rssMb: number }> {
  const dist = await compiled();
  const src = (p: string) => JSON.stringify(pathToFileURL(join(dist, p)).href);
  const script = `
    import { loadConfig } from ${src('config/load.js')};
    import { runSync } from ${src('mirror/sync.js')};
    import { silentLogger } from ${src('log.js')};
    import { preferSmallHeap } from ${src('cli/batch-heap.js')};
    // As the sync command runs (a dry run keeps V8's defaults).
    if (!${dryRun}) preferSmallHeap();
    const config = loadConfig(${JSON.stringify(configFile)});
    const t = performance.now();
    const r = await runSync({ config, logger: silentLogger(), dryRun: ${dryRun} });
    const ms = performance.now() - t;
    if (r.result !== 'ok') { console.error(JSON.stringify(r.failures.slice(0, 3))); process.exit(1); }
    console.log(JSON.stringify({ ms, rssKb: process.resourceUsage().maxRSS }));
  `;
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    p.stdout.on('data', (d) => (s += d));
    p.on('close', (code) => (code === 0 ? resolve(s) : reject(new Error(`scale child exited ${code}`))));
  });
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { ms: number; rssKb: number };
  return { ms: r.ms, rssMb: r.rssKb / 1024 };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await benchScale();
  await removeCompiled();
  process.stdout.write(table(rows));
}
