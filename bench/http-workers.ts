/**
 * HTTP on every core: what going from 1 to 2 HTTP processes gains, ours
 * (`maas-mirror serve` with http.workers 1 and 2) against nginx's
 * (worker_processes 1 and 2), measured the same way in the same run.
 *
 *   npx tsx bench/http-workers.ts        (or import { benchHttpWorkers })
 *
 * Ours runs as the real CLI (ops, metrics, access log to a file as nginx's).
 * The load generator shares the machine: wrk uses as many threads as there
 * are server processes at most, the same for every contender.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, open, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { BIG, buildSnapshot, curlAll, META, PREFIX } from './http.js';
import { bestOf, round, type BenchRow } from './lib.js';
import { freePort, startNginx } from './nginx.js';

export interface BenchHttpWorkersOptions {
  /** Size of the large item in MB (default 500); 0 skips the download rows. */
  readonly bigMB?: number;
  /** Concurrent large downloads (default 16). */
  readonly downloads?: number;
  /** Seconds of load per metadata run (default 4). */
  readonly seconds?: number;
  /** Turns per contender, best kept (default 3). */
  readonly rounds?: number;
  /** wrk connections (default 32). */
  readonly connections?: number;
  readonly log?: (line: string) => void;
}

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../bin/maas-mirror.js', import.meta.url));
/** wrk threads: two, so the generator is not what stops a two-process server. */
const WRK_THREADS = 2;

export async function benchHttpWorkers(opts: BenchHttpWorkersOptions = {}): Promise<BenchRow[]> {
  const log = opts.log ?? (() => undefined);
  const bigMB = opts.bigMB ?? 500;
  const seconds = opts.seconds ?? 4;
  const rounds = opts.rounds ?? 3;
  const connections = opts.connections ?? 32;
  const downloads = opts.downloads ?? 16;
  const work = await mkdtemp(join(tmpdir(), 'mm-bench-workers-'));
  await chmod(work, 0o755);
  const stops: (() => Promise<void>)[] = [];
  try {
    log(`building a snapshot${bigMB > 0 ? ` with a ${bigMB} MB item` : ''} in ${work}`);
    const dataDir = join(work, 'data');
    await buildSnapshot(dataDir, Math.max(1, bigMB));
    const bases: string[] = [];
    for (const workers of [1, 2]) {
      const ours = await startServe(work, dataDir, workers);
      stops.push(ours.stop);
      bases.push(ours.url);
    }
    const snapshotDir = await snapshotOf(dataDir);
    for (const workers of [1, 2]) {
      const nginx = await startNginx(snapshotDir, join(work, `nginx-${workers}`), { location: PREFIX, accessLog: true, workers });
      stops.push(() => nginx.stop());
      bases.push(nginx.url);
    }
    const names = ['ours, 1 worker', 'ours, 2 workers', 'nginx, 1 worker', 'nginx, 2 workers'];
    for (const b of bases) await wrk(`${b}${META}`, 2, connections);

    log(`metadata requests/s, 1 and 2 processes, best of ${rounds} turns…`);
    const [o1, o2, n1, n2] = (await bestOf(bases.map((b) => () => wrk(`${b}${META}`, seconds, connections)), rounds)) as [number, number, number, number];
    log(`  ${names.map((n, i) => `${n} ${[o1, o2, n1, n2][i]!.toFixed(0)}`).join(', ')}`);
    const rows: BenchRow[] = [
      perProcessRow('index.sjson requests/s', 'req/s', o1, o2, n1, n2, `wrk -t${WRK_THREADS} -c${connections}, best of ${rounds} × ${seconds}s taken in turns`),
      gainRow('HTTP 1→2 workers gain vs nginx\'s', o1, o2, n1, n2, `index.sjson requests/s (wrk -t${WRK_THREADS} -c${connections})`),
    ];
    if (bigMB > 0) {
      for (const b of bases) await curlAll(`${b}${BIG}`, 2);
      log(`${downloads} concurrent downloads of ${bigMB} MB, best of ${rounds} turns…`);
      const [b1, b2, g1, g2] = (await bestOf(bases.map((b) => () => curlAll(`${b}${BIG}`, downloads)), rounds)) as [number, number, number, number];
      log(`  ${names.map((n, i) => `${n} ${[b1, b2, g1, g2][i]!.toFixed(0)} MB/s`).join(', ')}`);
      rows.push(perProcessRow(`${downloads}×${bigMB} MB concurrent downloads`, 'MB/s', b1, b2, g1, g2, `aggregate, curl -o /dev/null, best of ${rounds} turns`));
    }
    return rows;
  } finally {
    for (const stop of stops) await stop().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

function perProcessRow(name: string, unit: string, o1: number, o2: number, n1: number, n2: number, how: string): BenchRow {
  return {
    group: 'http',
    name: `${name}, http.workers 2`,
    value: Math.round(o2),
    unit,
    baseline: Math.round(n2),
    ratio: round(o2 / n2),
    note: `${how}; with 1 process: ours ${Math.round(o1)}, nginx ${Math.round(n1)}; baseline nginx worker_processes 2 (access log on); ours is \`maas-mirror serve\` (access log to a file)`,
  };
}

/** gain = speedup − 1 = figure(2 processes) / figure(1 process) − 1; the row is our gain over nginx's. */
function gainRow(name: string, o1: number, o2: number, n1: number, n2: number, what: string): BenchRow {
  const ours = o2 / o1 - 1;
  const nginx = n2 / n1 - 1;
  const ratio = nginx > 0 ? ours / nginx : Number.NaN;
  return {
    group: 'http',
    name,
    value: round(ours),
    unit: 'gain',
    baseline: round(nginx),
    ratio: round(ratio),
    target: '≥ 0.8',
    pass: nginx > 0 && ours >= 0.8 * nginx,
    note:
      `${what}; gain = speedup − 1, speedup = req/s with 2 processes ÷ req/s with 1 (ours: http.workers 2 vs 1, ` +
      `nginx: worker_processes 2 vs 1), measured the same way in the same run; ratio = our gain ÷ nginx's` +
      (nginx > 0 ? '' : '; nginx gained nothing here, so the ratio is undefined'),
  };
}

async function wrk(url: string, seconds: number, connections: number): Promise<number> {
  const { stdout } = await run('wrk', [`-t${WRK_THREADS}`, `-c${connections}`, `-d${seconds}s`, url]);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  if (!m) throw new Error(`cannot read wrk's output:\n${stdout}`);
  return Number(m[1]);
}

/** The snapshot folder `current` points to (what nginx serves). */
async function snapshotOf(dataDir: string): Promise<string> {
  return join(dataDir, await readlink(join(dataDir, 'current')));
}

/** `maas-mirror serve` on a loopback port with http.workers = workers; its log (access lines too) goes to a file. */
async function startServe(work: string, dataDir: string, workers: number): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const config = join(work, `serve-${workers}.json`);
  await writeFile(
    config,
    JSON.stringify({
      dataDir,
      // Never read: no sync runs while measuring.
      sources: [{ name: 'bench', url: 'http://127.0.0.1:9/', verify: false }],
      http: { listen: `127.0.0.1:${port}`, workers },
      tftp: { enabled: false },
      schedule: { onStart: false, interval: '30d', jitter: '0s' },
    }),
  );
  const logFile = join(work, `serve-${workers}.log`);
  const out = await open(logFile, 'w');
  const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--config', config], { stdio: ['ignore', out.fd, out.fd], env: { ...process.env, LOG_LEVEL: 'info' } });
  await out.close();
  const url = `http://127.0.0.1:${port}${PREFIX}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const text = await readFile(logFile, 'utf8');
    const ready = workers === 1 ? text.includes('HTTP server listening') : text.split('HTTP worker serving').length - 1 >= workers;
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`maas-mirror serve (http.workers ${workers}) did not start:\n${text.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchHttpWorkers({ log: (l) => console.error(l), bigMB: Number(process.env.BENCH_BIG_MB ?? 500) });
  for (const r of rows) console.log(`${r.name}: ${r.value} ${r.unit}  nginx ${r.baseline}  ratio ${r.ratio}${r.target ? `  target ${r.target} ${r.pass ? 'pass' : 'FAIL'}` : ''}  (${r.note})`);
}
