/**
 * TFTP throughput: our server against Debian's tftpd-hpa (in.tftpd) serving
 * the same files on loopback in the same run, measured with the same client.
 *
 *   npx tsx bench/tftp.ts [--size-mb 64] [--concurrent 100] [--no-pin] [--multicore-only]
 *
 * The client is atftp (C), so the figures are the servers', not a slow
 * client's. Our server runs in its own process, like in.tftpd. tftpd-hpa has
 * no windowsize (RFC 7440); windowed rows are compared with its best
 * lock-step figure. The all-core rows run a second pair unpinned: ours with
 * the default tftp.workers, in.tftpd forking a process per transfer.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tftpGet } from '../src/tftp/client.js';
import { defaultTftpWorkers } from '../src/config/schema.js';
import { FILES_MODULE, TftpServer, openFromDirectory } from '../src/tftp/index.js';
import { bestOf, type BenchRow } from './lib.js';

export type { BenchRow } from './lib.js';

export interface BenchTftpOptions {
  /** Size of the single-client file; default 64 MiB. */
  sizeMb?: number;
  /** Clients in the aggregate test; default 100. */
  concurrent?: number;
  /** File each concurrent client gets; default 4 MiB. */
  concurrentSizeMb?: number;
  /**
   * Servers on CPU 0, clients on CPU 1 (default true, needs 2 CPUs and
   * taskset). Pinned, every packet crosses CPUs as it would cross a wire;
   * unpinned, the scheduler runs client and server on one CPU in turns,
   * which favours the lowest CPU cost per packet.
   */
  pin?: boolean;
  /** Runs per single-client figure, the best one kept; default 3 (aggregate: one fewer). */
  repeats?: number;
  /** Only the all-core aggregate rows (a quick check that they work). */
  multicoreOnly?: boolean;
  log?: (line: string) => void;
}

const CLIENT = 'atftp 0.8.0 (C), one process per transfer, wall time incl. its start-up';
const PINNING = 'servers pinned to CPU 0, clients to CPU 1';
const MiB = 1024 * 1024;

export async function benchTftp(opts: BenchTftpOptions = {}): Promise<BenchRow[]> {
  const sizeMb = opts.sizeMb ?? 64;
  const concurrent = opts.concurrent ?? 100;
  const concurrentSizeMb = opts.concurrentSizeMb ?? 4;
  const repeats = opts.repeats ?? 3;
  const log = opts.log ?? (() => undefined);
  pin = (opts.pin ?? true) && availableParallelism() >= 2 && hasTaskset();

  const dir = await mkdtemp(join(tmpdir(), 'mm-bench-tftp-'));
  // in.tftpd drops to "nobody" after chroot: the tree must be world-readable.
  await chmod(dir, 0o755);
  const big = randomBytes(sizeMb * MiB);
  await writeFile(join(dir, 'big.bin'), big, { mode: 0o644 });
  await writeFile(join(dir, 'conc.bin'), randomBytes(concurrentSizeMb * MiB), { mode: 0o644 });
  await writeFile(join(dir, 'probe'), 'x', { mode: 0o644 });
  const bigSha = sha256(big);

  const children: ChildProcess[] = [];
  try {
    ensureAtftp();
    const ours = await startOurs(dir, children);
    const oursPid = children.at(-1)!.pid!;
    const hpa = await startTftpdHpa(dir, children);
    log(`ours on 127.0.0.1:${ours}, in.tftpd on 127.0.0.1:${hpa}`);

    const floorPort = await startOurs(dir, children, '--floor');
    const checked = new Set<string>();
    /** MiB/s of one client; the first run of each server and options is checked byte for byte. */
    const single = (port: number, options: string[]) => async () => {
      const key = `${port} ${options.join()}`;
      const out = checked.has(key) ? '/dev/null' : join(dir, `out-${port}`);
      const ms = await atftp(port, 'big.bin', options, out);
      if (!checked.has(key)) {
        if (sha256(await readFile(out)) !== bigSha) throw new Error(`port ${port} served wrong bytes`);
        checked.add(key);
      }
      return sizeMb / (ms / 1000);
    };
    /** Aggregate MiB/s of `concurrent` clients started together. */
    const aggregate = (port: number, options: string[]) => async () => {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: concurrent }, () => atftp(port, 'conc.bin', options, '/dev/null')));
      return (concurrent * concurrentSizeMb) / ((performance.now() - t0) / 1000);
    };

    const rows: BenchRow[] = [];
    const row = (name: string, value: number, baseline: number, note: string, target?: number, unpinned = false) => {
      note += pin && !unpinned ? `; ${PINNING}` : '; not pinned';
      const ratio = round(value / baseline);
      const goal = target === undefined ? {} : { target: `≥ ${target}`, pass: ratio >= target };
      rows.push({ group: 'tftp', name, value: round(value), unit: 'MiB/s', baseline: round(baseline), ratio, note, ...goal });
      log(`${name}: ${round(value)} MiB/s vs tftpd-hpa ${round(baseline)} (x${round(value / baseline)})`);
    };

    if (!opts.multicoreOnly) await singleThreadRows();
    await allCoreRows();
    return rows;

    /** The single-thread rows: servers pinned to one CPU, clients to the other. */
    async function singleThreadRows(): Promise<void> {
      const hpaSingle: number[] = [];
      for (const [label, options] of [
        ['blksize 512 (no options)', []],
        ['blksize 1468', ['blksize 1468']],
        ['blksize 8192', ['blksize 8192']],
      ] as const) {
        const contenders = [single(hpa, [...options]), single(ours, [...options])];
        if (options.length === 0) contenders.push(single(floorPort, []));
        const [h = 0, m = 0, f] = await bestOf(contenders, repeats);
        hpaSingle.push(h);
        row(`1 client, ${sizeMb} MiB, ${label}`, m, h, `same options on both; client: ${CLIENT}`, 1);
        if (f !== undefined) {
          row(
            `1 client, ${sizeMb} MiB, blksize 512: node:dgram floor (reference, not our server)`,
            f,
            h,
            'a 30-line Node responder without any checks: what the runtime allows in lock-step on this host',
          );
        }
      }
      // tftpd-hpa has no windowsize (RFC 7440): each windowed row is compared with it at the same blksize.
      const windowed = [
        ['blksize 512 windowsize 16', ['windowsize 16'], 0],
        ['blksize 1468 windowsize 16', ['blksize 1468', 'windowsize 16'], 1],
        ['blksize 8192 windowsize 8', ['blksize 8192', 'windowsize 8'], 2],
      ] as const;
      const busy: number[] = [];
      const wins = await bestOf(
        windowed.map(([, options], i) => async () => {
          const before = cpuMs(oursPid);
          const t0 = performance.now();
          const rate = await single(ours, [...options])();
          busy[i] = Math.max(busy[i] ?? 0, (cpuMs(oursPid) - before) / (performance.now() - t0));
          return rate;
        }),
        repeats,
      );
      windowed.forEach(([label, , base], i) =>
        row(
          `1 client, ${sizeMb} MiB, ${label}`,
          wins[i] ?? 0,
          hpaSingle[base] ?? 0,
          `baseline: tftpd-hpa at the same blksize, lock-step (it has no windowsize); our server was busy ${Math.round((busy[i] ?? 0) * 100)}% of the transfer, the client the rest; client: ${CLIENT}`,
          3,
        ),
      );

      const [hpaAgg = 0, oursAgg = 0, oursAggWin = 0] = await bestOf(
        [aggregate(hpa, ['blksize 1468']), aggregate(ours, ['blksize 1468']), aggregate(ours, ['blksize 1468', 'windowsize 16'])],
        Math.max(1, repeats - 1),
      );
      row(`${concurrent} clients x ${concurrentSizeMb} MiB, blksize 1468`, oursAgg, hpaAgg, `aggregate; client: ${CLIENT}`, 1);
      row(
        `${concurrent} clients x ${concurrentSizeMb} MiB, blksize 1468 windowsize 16`,
        oursAggWin,
        hpaAgg,
        `aggregate; baseline: tftpd-hpa at blksize 1468 (no windowsize); client: ${CLIENT}`,
        3,
      );
    }

    /** The multi-core targets: both servers free to use every core, clients too, in turns. */
    async function allCoreRows(): Promise<void> {
      const workers = defaultTftpWorkers();
      const oursAll = await startOurs(dir, children, '--serve', { unpinned: true, workers });
      const hpaAll = await startTftpdHpa(dir, children, { unpinned: true });
      const free = (port: number, options: string[]) => async () => {
        const t0 = performance.now();
        await Promise.all(Array.from({ length: concurrent }, () => atftp(port, 'conc.bin', options, '/dev/null', true)));
        return (concurrent * concurrentSizeMb) / ((performance.now() - t0) / 1000);
      };
      const [h = 0, m = 0, w = 0] = await bestOf(
        [free(hpaAll, ['blksize 1468']), free(oursAll, ['blksize 1468']), free(oursAll, ['blksize 1468', 'windowsize 16'])],
        Math.max(1, repeats - 1),
      );
      const label = `${concurrent} clients x ${concurrentSizeMb} MiB, blksize 1468`;
      const who = `ours with tftp.workers ${workers}, tftpd-hpa forking per transfer, both on all ${availableParallelism()} cores`;
      row(`${label}, all cores`, m, h, `aggregate; ${who}; client: ${CLIENT}`, 1, true);
      row(
        `${label} windowsize 16, all cores`,
        w,
        h,
        `aggregate; ${who}; baseline: tftpd-hpa at blksize 1468 (no windowsize); client: ${CLIENT}`,
        3,
        true,
      );
    }
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

/** CPU time (user + system) a process has used so far, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Set by benchTftp from its `pin` option. Unpinned, a hundred client
 * processes also starve a one-process server, and in.tftpd's process per
 * transfer wins CPU shares rather than speed.
 */
let pin = false;

/** Pins the servers this module starts to CPU 0 and its atftp clients to CPU 1 (other groups' choice). */
export function usePinning(on: boolean): boolean {
  pin = on && availableParallelism() >= 2 && hasTaskset();
  return pin;
}

export function pinned(cpu: 0 | 1, command: string, args: string[]): [string, string[]] {
  return pin ? ['taskset', ['-c', String(cpu), command, ...args]] : [command, args];
}

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs one atftp get; resolves with its wall time in ms, rejects on failure. */
function atftp(port: number, file: string, options: string[], out: string, unpinned = false): Promise<number> {
  const t0 = performance.now();
  const args = [...options.flatMap((o) => ['--option', o]), '--get', '-r', file, '-l', out, '127.0.0.1', String(port)];
  return new Promise((resolve, reject) => {
    execFile(
      ...(unpinned ? (['atftp', args] as [string, string[]]) : pinned(1, 'atftp', args)),
      { timeout: 120_000 },
      (err, _stdout, stderr) => {
        if (err) reject(new Error(`atftp ${options.join(', ')} from port ${port} failed: ${err.message} ${stderr}`));
        else resolve(performance.now() - t0);
      },
    );
  });
}

export function ensureAtftp(): void {
  try {
    execFileSync('atftp', ['--version'], { stdio: 'ignore' });
  } catch {
    execFileSync('apt-get', ['install', '-y', 'atftp'], { stdio: 'ignore' });
  }
}

const round = (n: number) => Math.round(n * 100) / 100;

/** Our server (or the floor responder) in its own process: this file with --serve; resolves with its port. */
export async function startOurs(
  dir: string,
  children: ChildProcess[],
  mode: '--serve' | '--floor' = '--serve',
  o: { unpinned?: boolean; workers?: number } = {},
): Promise<number> {
  const args = ['--import', import.meta.resolve('tsx'), fileURLToPath(import.meta.url), mode, dir, ...(o.workers ? ['--workers', String(o.workers)] : [])];
  const child = spawn(...(o.unpinned ? ([process.execPath, args] as [string, string[]]) : pinned(0, process.execPath, args)), {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  for await (const line of lines) {
    const m = /^port (\d+)$/.exec(line);
    if (m) return Number(m[1]);
  }
  throw new Error('our TFTP server process exited before listening');
}

export async function startTftpdHpa(dir: string, children: ChildProcess[], o: { unpinned?: boolean } = {}): Promise<number> {
  const binary = '/usr/sbin/in.tftpd';
  try {
    execFileSync(binary, ['-V'], { stdio: 'ignore' });
  } catch {
    execFileSync('apt-get', ['install', '-y', 'tftpd-hpa'], { stdio: 'ignore' });
  }
  const port = await freeUdpPort();
  // --secure chroots into dir (needs root); --blocksize lets clients get the 8192 we also allow.
  const args = ['--foreground', '--address', `127.0.0.1:${port}`, '--secure', '--blocksize', '65464', dir];
  const child = spawn(...(o.unpinned ? ([binary, args] as [string, string[]]) : pinned(0, binary, args)), {
    stdio: 'ignore',
  });
  children.push(child);
  for (let i = 0; i < 50; i++) {
    try {
      await tftpGet({ host: '127.0.0.1', port, file: 'probe', timeoutMs: 100, retries: 1 });
      return port;
    } catch {
      if (child.exitCode !== null) throw new Error(`in.tftpd exited with ${child.exitCode}; it needs root for --secure`);
    }
  }
  throw new Error('in.tftpd did not answer');
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind({ address: '127.0.0.1', port: 0 }, r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function serve(dir: string, workers: number): Promise<void> {
  const server = new TftpServer({
    listen: [{ host: '127.0.0.1', port: 0 }],
    open: openFromDirectory(dir),
    maxTransfersPerClient: 1000,
    workers: { count: workers, opener: { module: FILES_MODULE, name: 'directoryWorkerOpener', data: dir } },
  });
  const [bound] = await server.start();
  process.stdout.write(`port ${bound!.port}\n`);
  process.on('SIGTERM', () => void server.stop({ deadlineMs: 0 }).then(() => process.exit(0)));
}

/**
 * The least a Node program can do per lock-step block: answer each ACK with
 * the next 512 bytes from memory, no checks, no timers, on a connected socket. Our server's
 * lock-step figure is measured against it to show what the runtime costs.
 */
async function floor(dir: string): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const data = readFileSync(join(dir, 'big.bin'));
  const main = createSocket('udp4');
  main.on('message', (_req, rinfo) => {
    const s = createSocket('udp4');
    // Connected, one whole buffer per send: the cheapest way dgram has to put a packet out.
    s.bind(0, '127.0.0.1', () =>
      s.connect(rinfo.port, rinfo.address, () => {
        let block = 1;
        const packet = Buffer.allocUnsafe(516);
        const send = () => {
          const n = data.copy(packet, 4, (block - 1) * 512, block * 512);
          packet.writeUInt16BE(3, 0);
          packet.writeUInt16BE(block & 0xffff, 2);
          s.send(packet.subarray(0, 4 + n));
          return n;
        };
        let last = send();
        s.on('message', (ack) => {
          if (ack.readUInt16BE(2) !== (block & 0xffff)) return;
          if (last < 512) return s.close();
          block++;
          last = send();
        });
      }),
    );
  });
  main.bind(0, '127.0.0.1', () => process.stdout.write(`port ${main.address().port}\n`));
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const serveDir = arg('--serve');
  const floorDir = arg('--floor');
  if (serveDir) {
    await serve(serveDir, Number(arg('--workers') ?? 1));
  } else if (floorDir) {
    await floor(floorDir);
  } else {
    const rows = await benchTftp({
      sizeMb: Number(arg('--size-mb') ?? 64),
      concurrent: Number(arg('--concurrent') ?? 100),
      pin: !process.argv.includes('--no-pin'),
      multicoreOnly: process.argv.includes('--multicore-only'),
      log: (line) => console.error(line),
    });
    console.table(rows.map(({ group: _g, ...r }) => r));
  }
}
