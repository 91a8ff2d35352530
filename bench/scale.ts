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
import type { ProductsDocument } from '../src/simplestreams/types.js';
import { compiled, removeCompiled, round, table, type BenchRow } from './lib.js';

/**
 * How cost grows with the size of the stream: planning (a dry run: fetch,
 * verify, flatten, filter, plan) and a no-op resync, for generated streams
 * of 1,000 and 10,000 products with small synthetic items, and the size of
 * each products file the snapshot publishes.
 */
export async function benchScale(sizes = [1000, 10_000], log = (l: string) => process.stderr.write(l + '\n')): Promise<BenchRow[]> {
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
      const plan = await child(config, true);
      const cold = await child(config, false);
      const noop = await child(config, false);
      const published = await productsFiles(join(dir, 'data', 'current', 'streams', 'v1'));
      rows.push(
        { group: 'scale', name: `plan (dry run), ${n} products`, value: plan.ms, unit: 'ms', note: `peak RSS ${round(plan.rssMb, 0)} MB` },
        { group: 'scale', name: `cold sync, ${n} products (${n * 4} files)`, value: cold.ms, unit: 'ms', note: `peak RSS ${round(cold.rssMb, 0)} MB; published products files: ${published}` },
        { group: 'scale', name: `no-op resync, ${n} products`, value: noop.ms, unit: 'ms', note: `peak RSS ${round(noop.rssMb, 0)} MB` },
      );
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
  return rows;
}

/** Size of each products file the snapshot publishes (what a MAAS region downloads and parses). */
async function productsFiles(dir: string): Promise<string> {
  const names = (await readdir(dir)).filter((n) => n !== 'index.json' && n.endsWith('.json'));
  const sizes = await Promise.all(names.map(async (n) => `${n} ${round((await stat(join(dir, n))).size / 1e6)} MB`));
  return sizes.join(', ');
}

export async function generate(root: string, n: number, dir: string): Promise<string> {
  const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'scale' }], format: 'object' });
  const keyring = join(dir, 'scale.gpg');
  await writeFile(keyring, privateKey.toPublic().write());
  const updated = formatRfc2822(new Date());
  const doc: ProductsDocument = { content_id: 'com.example:scale:v3:download', datatype: 'image-ids', format: 'products:1.0', updated, products: {} };
  for (let i = 0; i < n; i++) {
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
  const text = JSON.stringify(doc, null, 1) + '\n';
  await mkdir(join(root, 'streams/v1'), { recursive: true });
  await writeFile(join(root, 'streams/v1/com.example:scale:v3:download.sjson'), await clearsign(text, privateKey));
  const index = { format: 'index:1.0', updated, index: { [doc.content_id]: { datatype: 'image-ids', format: 'products:1.0', path: 'streams/v1/com.example:scale:v3:download.sjson', products: Object.keys(doc.products), updated } } };
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
