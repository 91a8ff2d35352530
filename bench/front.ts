/**
 * nginx in front of maas-mirror, with the server block `maas-mirror nginx-config`
 * prints, against nginx alone serving the same published tree, in the same run,
 * on loopback.
 *
 *   npx tsx bench/front.ts            (or import { benchFront })
 *
 * - index.sjson requests/s and aggregate MB/s of concurrent downloads of a
 *   large item: nginx in front against nginx alone (target ≥ 0.9);
 * - the same large item, and a small one, by a hash-prefix route
 *   (/images/<sha256 prefix>/…: maas-mirror answers with X-Accel-Redirect,
 *   nginx sends the bytes) against their tree path through the same nginx in
 *   front (target ≥ 0.8).
 * Sizes come from the options, else MM_FRONT_MB, MM_FRONT_SMALL_KB,
 * MM_FRONT_DOWNLOADS, MM_FRONT_SECONDS, MM_FRONT_ROUNDS (for a quick check).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { BIG, META, PREFIX, SMALL, SNAPSHOT, buildSnapshot, curlAll, metadataLoad, startOurs, tool, type Items } from './http.js';
import { bestOf, type BenchRow } from './lib.js';
import { NGINX_WORKERS, startNginx, type Nginx } from './nginx.js';

export interface BenchFrontOptions {
  /** Size of the large item in MB (default 500). */
  readonly bigMB?: number;
  /** Size of the small item in KB (default 64, a pxelinux-sized bootloader). */
  readonly smallKB?: number;
  /** Concurrent large downloads (default 16). */
  readonly downloads?: number;
  /** Seconds of load per requests/s run (default 4). */
  readonly seconds?: number;
  /** Turns per contender, best kept (default 3). */
  readonly rounds?: number;
  /** Connections of the requests/s load generator (default 32, as bench/http.ts). */
  readonly connections?: number;
  readonly log?: (line: string) => void;
}

const BIN = join(import.meta.dirname, '..', 'bin', 'maas-mirror.js');
const run = promisify(execFile);

/** A positive number from the environment, or the default. */
function fromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${JSON.stringify(raw)}: give a positive number`);
  return n;
}

/** Both nginx setups, maas-mirror behind the front one, and the URLs measured. */
export interface FrontSetup {
  readonly dataDir: string;
  readonly items: Items;
  readonly urls: {
    readonly aloneMeta: string;
    readonly frontMeta: string;
    readonly aloneBig: string;
    readonly frontBig: string;
    readonly hashBig: string;
    readonly frontSmall: string;
    readonly hashSmall: string;
  };
  close(): Promise<void>;
}

/**
 * Builds the snapshot under `work` and starts: nginx alone on the snapshot folder; maas-mirror's
 * HTTP server on dataDir (as bench/http.ts runs it, access log to a file); nginx with the server
 * block the CLI prints for that dataDir and server. Both nginx: NGINX_WORKERS workers, access log on.
 */
export async function startFront(work: string, sizes: { bigMB: number; smallKB: number }): Promise<FrontSetup> {
  // nginx workers may drop root: the tree must be readable by others.
  await chmod(work, 0o755);
  const dataDir = join(work, 'data');
  const items = await buildSnapshot(dataDir, sizes.bigMB, sizes.smallKB);
  const tree = join(dataDir, 'snapshots', SNAPSHOT);
  const children: ChildProcess[] = [];
  const nginxes: Nginx[] = [];
  const close = async () => {
    for (const n of nginxes) await n.stop().catch(() => undefined);
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((ok) => c.once('exit', ok));
      c.kill('SIGTERM');
      await exited;
    }
  };
  try {
    const back = await startOurs(['--serve', dataDir, join(work, 'mirror-access.log')]);
    children.push(back.child);
    nginxes.push(await startNginx(tree, join(work, 'alone'), { location: PREFIX, accessLog: true }));
    const upstream = `http://127.0.0.1:${back.port}`;
    nginxes.push(
      await startNginx(tree, join(work, 'front'), {
        location: PREFIX,
        accessLog: true,
        site: (port) => generatedSite(work, dataDir, `127.0.0.1:${port}`, upstream),
      }),
    );
    const [alone, front] = nginxes as [Nginx, Nginx];
    const origin = new URL(front.url).origin;
    const hashRoute = (path: string) => `${origin}/images/${items[path]!.sha256.slice(0, 16)}/${path.split('/').at(-1)}`;
    return {
      dataDir,
      items,
      urls: {
        aloneMeta: alone.url + META,
        frontMeta: front.url + META,
        aloneBig: alone.url + BIG,
        frontBig: front.url + BIG,
        hashBig: hashRoute(BIG),
        frontSmall: front.url + SMALL,
        hashSmall: hashRoute(SMALL),
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The server block `maas-mirror nginx-config` prints for dataDir, run as an operator would. */
export async function generatedSite(work: string, dataDir: string, listen: string, upstream: string): Promise<string> {
  const configFile = join(work, 'mirror.json');
  // A source is required by the config; nginx-config never contacts it.
  await writeFile(configFile, JSON.stringify({ dataDir, sources: [{ name: 'bench', url: 'http://127.0.0.1:9/', verify: false }], http: { prefix: PREFIX } }));
  const { stdout } = await run(process.execPath, [BIN, 'nginx-config', '--config', configFile, '--listen', listen, '--upstream', upstream], {
    env: { ...process.env, MAAS_MIRROR_FROM_SOURCE: '1', LOG_LEVEL: 'warn' },
  });
  await mkdir(join(work, 'front'), { recursive: true });
  await writeFile(join(work, 'front', 'site.conf'), stdout);
  return stdout;
}

/**
 * Every measured URL answers with the file's bytes, sent by nginx (its own "mtime-size" ETag, not
 * maas-mirror's sha256): a route that failed, or that maas-mirror answered itself, would measure
 * something else.
 */
export async function checkRoutes(setup: FrontSetup): Promise<void> {
  const tree = join(setup.dataDir, 'snapshots', SNAPSHOT);
  const u = setup.urls;
  const expected: [string, string][] = [
    [u.aloneMeta, META],
    [u.frontMeta, META],
    [u.aloneBig, BIG],
    [u.frontBig, BIG],
    [u.hashBig, BIG],
    [u.frontSmall, SMALL],
    [u.hashSmall, SMALL],
  ];
  for (const [url, path] of expected) {
    const file = join(tree, path);
    const size = (await stat(file)).size;
    const from = Math.max(0, size - 4096);
    const res = await request(url, { headers: { range: `bytes=${from}-` } });
    const body = Buffer.from(await res.body.arrayBuffer());
    const want = Buffer.alloc(size - from);
    const fh = await open(file);
    try {
      await fh.read(want, 0, want.length, from);
    } finally {
      await fh.close();
    }
    const etag = String(res.headers.etag ?? '');
    if (res.statusCode !== 206 || !body.equals(want) || !/^"[0-9a-f]+-[0-9a-f]+"$/.test(etag)) {
      throw new Error(`${url}: expected the last ${want.length} bytes of ${path} sent by nginx, got ${res.statusCode}, ${body.length} bytes, ETag ${etag || 'none'}`);
    }
  }
}

export async function benchFront(opts: BenchFrontOptions = {}): Promise<BenchRow[]> {
  const log = opts.log ?? (() => undefined);
  const bigMB = opts.bigMB ?? fromEnv('MM_FRONT_MB', 500);
  const smallKB = opts.smallKB ?? fromEnv('MM_FRONT_SMALL_KB', 64);
  const downloads = opts.downloads ?? fromEnv('MM_FRONT_DOWNLOADS', 16);
  const seconds = opts.seconds ?? fromEnv('MM_FRONT_SECONDS', 4);
  const rounds = opts.rounds ?? fromEnv('MM_FRONT_ROUNDS', 3);
  const connections = opts.connections ?? 32;
  const work = await mkdtemp(join(tmpdir(), 'mm-bench-front-'));
  try {
    log(`building a snapshot with a ${bigMB} MB and a ${smallKB} KB item in ${work}`);
    const setup = await startFront(work, { bigMB, smallKB });
    try {
      await checkRoutes(setup);
      const u = setup.urls;
      // Warm all (page cache, maas-mirror's lookups, JIT) before measuring.
      for (const url of [u.aloneBig, u.hashBig]) await curlAll(url, 2);
      for (const url of [u.aloneMeta, u.frontMeta, u.frontSmall, u.hashSmall]) await metadataLoad(url, 2, connections);

      // In turns, best of each kept: a burst of load elsewhere hits every contender alike.
      const rps = (url: string) => async () => (await metadataLoad(url, seconds, connections)).rps;
      log(`index.sjson requests/s, best of ${rounds} turns…`);
      const [aMeta, fMeta] = (await bestOf([rps(u.aloneMeta), rps(u.frontMeta)], rounds)) as [number, number];
      log(`  nginx alone ${aMeta.toFixed(0)}, nginx in front ${fMeta.toFixed(0)}`);

      log(`${smallKB} KB item requests/s, tree path and hash route through nginx in front, best of ${rounds} turns…`);
      const [tSmall, hSmall] = (await bestOf([rps(u.frontSmall), rps(u.hashSmall)], rounds)) as [number, number];
      log(`  tree path ${tSmall.toFixed(0)}, hash route ${hSmall.toFixed(0)}`);

      log(`${downloads} concurrent downloads of ${bigMB} MB, best of ${rounds} turns…`);
      const big = await bestOf([u.aloneBig, u.frontBig, u.hashBig].map((url) => () => curlAll(url, downloads)), rounds);
      const [aBig, fBig, hBig] = big as [number, number, number];
      log(`  nginx alone ${aBig.toFixed(0)} MB/s, nginx in front ${fBig.toFixed(0)} MB/s, hash route ${hBig.toFixed(0)} MB/s`);

      const setupNote = `nginx alone: a plain server block (alias of the snapshot folder, sendfile); nginx in front: the block "maas-mirror nginx-config" prints, maas-mirror's HTTP server behind it on loopback (its access log to a file); both nginx ${NGINX_WORKERS} worker${NGINX_WORKERS === 1 ? '' : 's'}, access log on`;
      const hashNote = `/images/<16 hex of the sha256>/… (nginx passes it to maas-mirror, which answers X-Accel-Redirect; nginx sends the file) against the item's tree path, served by the same nginx in front straight from dataDir`;
      return [
        row('index.sjson requests/s through nginx in front', fMeta, aMeta, 'req/s', 'nginx', 0.9, `${tool()}, ${connections} connections, best of ${rounds} × ${seconds}s taken in turns; ${setupNote}`),
        row(`${downloads}×${bigMB} MB concurrent downloads through nginx in front`, fBig, aBig, 'MB/s', 'nginx', 0.9, `aggregate, ${downloads} curl -o /dev/null at once on the tree path, best of ${rounds} turns; ${setupNote}`),
        row(`${downloads}×${bigMB} MB concurrent downloads by hash route`, hBig, fBig, 'MB/s', 'tree path, same front', 0.8, `aggregate, ${downloads} curl -o /dev/null at once, best of ${rounds} turns taken with the rows above; ${hashNote}`),
        // The hash-route target is about the bytes (the 500 MB row); a small file measures the hop through maas-mirror itself.
        row(`${smallKB} KB item requests/s by hash route (reference: one round trip through maas-mirror per request)`, hSmall, tSmall, 'req/s', 'tree path, same front', undefined, `${tool()}, ${connections} connections, best of ${rounds} × ${seconds}s taken in turns; ${hashNote}`),
      ];
    } finally {
      await setup.close();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function row(name: string, value: number, baseline: number, unit: string, baselineName: string, target: number | undefined, note: string): BenchRow {
  const ratio = Math.round((value / baseline) * 100) / 100;
  const judged = target === undefined ? {} : { target: `≥ ${target}`, pass: value / baseline >= target };
  return { group: 'front', name, value: Math.round(value), unit, baseline: Math.round(baseline), baselineName, ratio, ...judged, note };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchFront({ log: (l) => console.error(l) });
  for (const r of rows) console.log(`${r.group}  ${r.name}: ${r.value} ${r.unit}  ${r.baselineName} ${r.baseline} ${r.unit}  ratio ${r.ratio} (${r.target})  [${r.note}]`);
}
