/**
 * HTTP serving benchmark: our server against nginx on the same snapshot
 * folder, in the same run, on loopback.
 *
 *   npx tsx bench/http.ts            (or import { benchHttp })
 *
 * - metadata: requests/s for streams/v1/index.sjson (wrk when installed,
 *   else an undici Pool loop; the row's note says which);
 * - large: aggregate MB/s of 16 concurrent curl downloads of a 500 MB item;
 * - memory: peak RSS (VmHWM) of our server, run as a child process, while
 *   100 downloads run at once.
 * nginx runs with worker_processes 1, the same single process as ours.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, link, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Pool } from 'undici';
import { bestOf, type BenchRow } from './lib.js';
import { startNginx } from './nginx.js';

export type { BenchRow } from './lib.js';

export interface BenchHttpOptions {
  /** Size of the large item in MB (default 500). */
  readonly bigMB?: number;
  /** Concurrent large downloads (default 16). */
  readonly downloads?: number;
  /** Concurrent downloads for the RSS figure (default 100). */
  readonly rssDownloads?: number;
  /** Seconds of load per metadata run (default 4). */
  readonly seconds?: number;
  /** Turns per contender, best kept (default 3). */
  readonly rounds?: number;
  /** Connections of the metadata load generator (default 32). */
  readonly connections?: number;
  readonly log?: (line: string) => void;
}

export const PREFIX = '/maas/images/ephemeral-v3/stable/';
export const BIG = 'ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs';
export const META = 'streams/v1/index.sjson';
const SNAPSHOT = '20261126T201500Z-b3c4d5';
const run = promisify(execFile);

export async function benchHttp(opts: BenchHttpOptions = {}): Promise<BenchRow[]> {
  const log = opts.log ?? (() => undefined);
  const bigMB = opts.bigMB ?? 500;
  const seconds = opts.seconds ?? 4;
  const rounds = opts.rounds ?? 3;
  const connections = opts.connections ?? 32;
  const downloads = opts.downloads ?? 16;
  const rssDownloads = opts.rssDownloads ?? 100;
  const work = await mkdtemp(join(tmpdir(), 'mm-bench-http-'));
  // nginx workers drop root for "nobody": the tree must be readable by others.
  await chmod(work, 0o755);
  const children: ChildProcess[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    log(`building a snapshot with a ${bigMB} MB item in ${work}`);
    const dataDir = join(work, 'data');
    await buildSnapshot(dataDir, bigMB);
    const tree = join(dataDir, 'snapshots', SNAPSHOT);

    const ours = await startOurs(['--serve', dataDir, join(work, 'ours-access.log')]);
    children.push(ours.child);
    const floor = await startOurs(['--floor', join(tree, META), join(tree, BIG)]);
    children.push(floor.child);
    const nginx = await startNginx(tree, work, { location: PREFIX, accessLog: true });
    stops.push(() => nginx.stop());
    const bases = [nginx.url, `http://127.0.0.1:${ours.port}${PREFIX}`, `http://127.0.0.1:${floor.port}${PREFIX}`];

    // Warm all (page cache, our content cache, JIT) before measuring.
    await curlAll(`${bases[1]}${BIG}`, 2);
    for (const b of bases) await metadataLoad(`${b}${META}`, 2, connections);

    // The machine is shared: runs are taken in turns and the best of each kept, so a burst elsewhere hits all alike.
    log(`metadata requests/s, best of ${rounds} turns…`);
    const meta = await bestOf(bases.map((b) => async () => (await metadataLoad(`${b}${META}`, seconds, connections)).rps), rounds);
    const [nMeta, oMeta, fMeta] = meta as [number, number, number];
    log(`  nginx ${nMeta.toFixed(0)}, ours ${oMeta.toFixed(0)}, node:http floor ${fMeta.toFixed(0)}`);

    log(`${downloads} concurrent downloads of ${bigMB} MB, best of ${rounds} turns…`);
    const big = await bestOf(bases.map((b) => () => curlAll(`${b}${BIG}`, downloads)), rounds);
    const [nBig, oBig, fBig] = big as [number, number, number];
    log(`  nginx ${nBig.toFixed(0)} MB/s, ours ${oBig.toFixed(0)} MB/s, floor ${fBig.toFixed(0)} MB/s`);

    log(`${rssDownloads} concurrent downloads for peak RSS…`);
    const before = await procStatus(ours.child.pid!);
    const sampler = sampleRss(ours.child.pid!);
    const oMany = await curlAll(`${bases[1]}${BIG}`, rssDownloads, 6);
    const during = sampler.stop();
    const after = await procStatus(ours.child.pid!);
    log(`  ${oMany.toFixed(0)} MB/s; RSS before ${before.rss} MB, max sampled ${during} MB, VmHWM ${after.hwm} MB`);

    const ratio = (v: number, b: number) => Math.round((v / b) * 100) / 100;
    return [
      {
        group: 'http',
        name: 'index.sjson requests/s',
        value: Math.round(oMeta),
        unit: 'req/s',
        baseline: Math.round(nMeta),
        ratio: ratio(oMeta, nMeta),
        target: '≥ 0.5',
        pass: oMeta / nMeta >= 0.5,
        note: `${tool()}, ${connections} connections, best of ${rounds} × ${seconds}s taken in turns; baseline nginx (1 worker, access log on)`,
      },
      {
        group: 'http',
        name: 'index.sjson requests/s: node:http floor (reference, not our server)',
        value: Math.round(fMeta),
        unit: 'req/s',
        baseline: Math.round(nMeta),
        ratio: ratio(fMeta, nMeta),
        note: 'a bare node:http responder writing the same bytes and headers from memory, no log, no checks: what the runtime allows on this host',
      },
      {
        group: 'http',
        name: `${downloads}×${bigMB} MB concurrent downloads`,
        value: Math.round(oBig),
        unit: 'MB/s',
        baseline: Math.round(nBig),
        ratio: ratio(oBig, nBig),
        target: '≥ 0.8',
        pass: oBig / nBig >= 0.8,
        note: `aggregate, curl -o /dev/null, best of ${rounds} turns; baseline nginx (1 worker, sendfile)`,
      },
      {
        group: 'http',
        name: `${downloads}×${bigMB} MB concurrent downloads: node:http floor (reference, not our server)`,
        value: Math.round(fBig),
        unit: 'MB/s',
        baseline: Math.round(nBig),
        ratio: ratio(fBig, nBig),
        note: 'a bare node:http responder piping fs.createReadStream, no checks: Node has no sendfile, so every byte is copied through user space',
      },
      {
        group: 'http',
        name: `peak RSS, ${rssDownloads} concurrent downloads`,
        value: after.hwm,
        unit: 'MB',
        target: '< 250',
        pass: after.hwm < 250,
        note: `VmHWM of the server process over the whole run (${during} MB max sampled during the ${rssDownloads} downloads, ${before.rss} MB before)`,
      },
    ];
  } finally {
    for (const c of children) c.kill('SIGTERM');
    for (const stop of stops) await stop().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------

export async function buildSnapshot(dataDir: string, bigMB: number): Promise<void> {
  const tree = join(dataDir, 'snapshots', SNAPSHOT);
  await mkdir(join(tree, 'streams/v1'), { recursive: true });
  // Random-ish and fully written: a 1 MiB random block, varied per MiB, so nothing compresses or is sparse.
  const block = randomBytes(1024 * 1024);
  const tmp = join(dataDir, 'big.tmp');
  const hash = createHash('sha256');
  const out = createWriteStream(tmp);
  for (let i = 0; i < bigMB; i++) {
    block.writeUInt32LE(i, (i * 4096) % (block.length - 4));
    hash.update(block);
    if (!out.write(block)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  const sha = hash.digest('hex');
  const blob = join(dataDir, 'blobs', 'sha256', sha.slice(0, 2), sha);
  await mkdir(dirname(blob), { recursive: true });
  await rename(tmp, blob);
  await mkdir(dirname(join(tree, BIG)), { recursive: true });
  await link(blob, join(tree, BIG));

  // A real-sized signed index (the live one is a few KB).
  const sample = await readFile(fileURLToPath(new URL('../test/fixtures/stable-index.json', import.meta.url)), 'utf8');
  const sjson = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n${sample}\n-----BEGIN PGP SIGNATURE-----\n\n${randomBytes(512).toString('base64')}\n-----END PGP SIGNATURE-----\n`;
  await writeFile(join(tree, 'streams/v1/index.sjson'), sjson);
  await writeFile(join(tree, 'streams/v1/index.json'), sample);
  await mkdir(join(dataDir, 'manifests'), { recursive: true });
  await writeFile(
    join(dataDir, 'manifests', `${SNAPSHOT}.json`),
    JSON.stringify({
      id: SNAPSHOT,
      created: new Date().toISOString(),
      sources: {},
      files: { [BIG]: { sha256: sha, size: bigMB * 1024 * 1024, source: 'bench', held: true } },
      bootloaders: [],
      contents: [],
      fingerprint: sha,
      signedBy: 'bench',
    }),
  );
  await symlink(join('snapshots', SNAPSHOT), join(dataDir, 'current'));
}

/** This file in a child process (our server, or the floor responder); resolves with its port. */
async function startOurs(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /LISTENING (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`our server exited with ${code} before listening`)));
  });
  return { child, port };
}

function hasWrk(): boolean {
  return spawnSync('wrk', ['--version']).error === undefined;
}

function tool(): string {
  return hasWrk() ? 'wrk -t1' : 'undici Pool loop';
}

/** Requests/s: wrk when installed, else a keep-alive undici Pool loop. */
async function metadataLoad(url: string, seconds: number, connections: number): Promise<{ rps: number; tool: string }> {
  if (hasWrk()) {
    const { stdout } = await run('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, url]);
    const m = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
    if (!m) throw new Error(`cannot read wrk's output:\n${stdout}`);
    return { rps: Number(m[1]), tool: 'wrk -t1' };
  }
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections, pipelining: 1 });
  let count = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (Date.now() < end) {
        const res = await pool.request({ path: u.pathname, method: 'GET' });
        await res.body.arrayBuffer();
        if (res.statusCode === 200) count++;
      }
    }),
  );
  await pool.close();
  return { rps: count / seconds, tool: 'undici Pool loop' };
}

/** Aggregate MB/s of n concurrent curl downloads (each cut at maxTime seconds when given). */
export async function curlAll(url: string, n: number, maxTime?: number): Promise<number> {
  const started = performance.now();
  const sizes = await Promise.all(
    Array.from({ length: n }, async () => {
      const args = ['-s', '-o', '/dev/null', '-w', '%{size_download}', ...(maxTime ? ['--max-time', String(maxTime)] : []), url];
      try {
        const { stdout } = await run('curl', args);
        return Number(stdout);
      } catch (err) {
        // curl exits 28 when --max-time cuts it; what it got still counts.
        return Number((err as { stdout?: string }).stdout ?? 0);
      }
    }),
  );
  const secs = (performance.now() - started) / 1000;
  return sizes.reduce((a, b) => a + b, 0) / 1e6 / secs;
}

async function procStatus(pid: number): Promise<{ rss: number; hwm: number }> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(text)?.[1] ?? 0);
  return { rss: Math.round(kb('VmRSS') / 1024), hwm: Math.round(kb('VmHWM') / 1024) };
}

function sampleRss(pid: number): { stop(): number } {
  let max = 0;
  const timer = setInterval(() => {
    procStatus(pid).then(
      (s) => (max = Math.max(max, s.rss)),
      () => undefined,
    );
  }, 50);
  return {
    stop: () => {
      clearInterval(timer);
      return max;
    },
  };
}

/** Child mode: our server on an ephemeral loopback port, access log to a file as nginx's is. */
async function serve(dataDir: string, accessLog: string): Promise<void> {
  const { startHttpServer } = await import('../src/http/index.js');
  const { createLogger } = await import('../src/log.js');
  const { Layout } = await import('../src/store/layout.js');
  const { pino } = await import('pino');
  const destination = pino.destination({ dest: accessLog, sync: false }) as unknown as NodeJS.WritableStream;
  const logger = createLogger({ level: 'info', destination });
  const handle = await startHttpServer({
    config: { http: { prefix: PREFIX, listen: [], publicUrl: undefined } },
    layout: new Layout(dataDir),
    logger,
    listen: [{ host: '127.0.0.1', port: 0 }],
  });
  process.stdout.write(`LISTENING ${handle.addresses[0]!.port}\n`);
  process.on('SIGTERM', () => {
    void handle.close(100).then(() => process.exit(0));
  });
}

/**
 * Child mode: the least a node:http server can do for the same two URLs:
 * the metadata bytes and headers from memory, the big file piped from a read
 * stream; no access log, no lookups, no checks.
 */
async function floor(metaPath: string, bigPath: string): Promise<void> {
  const { createServer } = await import('node:http');
  const { createReadStream, statSync } = await import('node:fs');
  const meta = await readFile(metaPath);
  const headers = [
    'ETag', `"${createHash('sha256').update(meta).digest('hex')}"`,
    'Last-Modified', new Date().toUTCString(),
    'Cache-Control', 'no-cache',
    'Accept-Ranges', 'bytes',
    'X-Content-Type-Options', 'nosniff',
    'Vary', 'Accept-Encoding',
    'Content-Type', 'text/plain; charset=utf-8',
    'Content-Length', String(meta.length),
  ];
  const bigSize = statSync(bigPath).size;
  const server = createServer((req, res) => {
    if (req.url?.endsWith(META)) {
      res.writeHead(200, headers);
      res.end(meta);
    } else {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': bigSize });
      createReadStream(bigPath, { highWaterMark: 512 * 1024 }).pipe(res);
    }
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${(server.address() as { port: number }).port}\n`));
  process.on('SIGTERM', () => process.exit(0));
}

function printTable(rows: BenchRow[]): void {
  for (const r of rows) {
    const base = r.baseline === undefined ? '' : `  nginx ${r.baseline} ${r.unit}  ratio ${r.ratio}`;
    console.log(`${r.group}  ${r.name}: ${r.value} ${r.unit}${base}${r.note ? `  (${r.note})` : ''}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv[2] === '--serve') {
    await serve(process.argv[3]!, process.argv[4]!);
  } else if (process.argv[2] === '--floor') {
    await floor(process.argv[3]!, process.argv[4]!);
  } else {
    const rows = await benchHttp({ log: (l) => console.error(l) });
    printTable(rows);
  }
}
