/**
 * TFTP on a boot LAN rather than loopback: every datagram crosses a relay
 * (bench/relay.ts) that delays it and drops a share of them, both ways. Our
 * server and tftpd-hpa, with the same options, each behind its own relay.
 *
 *   npx tsx bench/lan.ts [--clients 200] [--delay-ms 0.25] [--drop 0.01]
 *
 * - a PXE storm: clients started together, each fetching bootx64.efi then
 *   grubx64.efi at blksize 1468 with the retransmission timeout UEFI
 *   firmware uses (EDK2 PXE: 4 s, 6 tries), lock-step; total and worst client;
 * - one lock-step transfer of grubx64.efi with the same client, with and without loss.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tftpGet } from '../src/tftp/client.js';
import type { BenchRow } from './lib.js';
import { ensureAtftp, pinned, startOurs, startTftpdHpa, usePinning } from './tftp.js';

/** What the modelled LAN leaves out; BENCHMARKS.md prints it under the lan rows. */
export const LAN_MODEL_LIMITS = `The lan group's network is a model, not a wire:
- Loss is independent per datagram at a fixed share. Real loss comes in bursts (a switch buffer
  overflowing under a storm, a port flapping), which takes out several packets of one transfer at
  once; the adaptive timer then backs off to the negotiated timeout like a fixed one.
- The delay is constant: no jitter, no queueing in switches, no reordering, no duplicated datagrams,
  no bandwidth limit (a 1 Gbit/s port carries about 80,000 full 1468-byte blocks per second, less
  than loopback). Sub-millisecond delays are kept by polling the queue once per event-loop turn.
- The relay is one Node process on one CPU for every client: with 200 clients it, and the Node
  clients in the bench process, are the slowest part, so the storm's total bounds what the model
  carries at least as much as what the servers do. Both servers cross the same relay, so the ratio
  stands; the absolute seconds are not a real storm's.
- Every client shares one host, one IP and one CPU; firmware's own costs (writing blocks to memory,
  a tsize probe before each file, ARP, DHCP before TFTP) are left out, and clients start together
  rather than spread over the seconds a power-on takes.
- The client follows EDK2's timeouts (4 s, 6 tries) and answers a duplicate block with one ACK per
  gap; other firmware (iPXE, U-Boot, older BIOS PXE ROMs) resends on other schedules.`;

export interface BenchLanOptions {
  /** Clients in the storm; default 200. */
  clients?: number;
  /** One-way delay per datagram; default 0.25 ms. */
  delayMs?: number;
  /** Share dropped each way; default 0.01. */
  drop?: number;
  /** Turns per figure, the best kept; default 2. */
  repeats?: number;
  log?: (line: string) => void;
}

/** What EDK2's PXE driver uses (PXEBC_MTFTP_TIMEOUT, PXEBC_MTFTP_RETRIES). */
const FIRMWARE = { timeoutMs: 4000, retries: 6, blksize: 1468 } as const;
/** Sizes of Ubuntu's signed shim and GRUB: what a UEFI machine fetches first. */
const FILES = { 'bootx64.efi': 1_048_504, 'grubx64.efi': 4_183_488 } as const;

export async function benchLan(opts: BenchLanOptions = {}): Promise<BenchRow[]> {
  const clients = opts.clients ?? 200;
  const delayMs = opts.delayMs ?? 0.25;
  const drop = opts.drop ?? 0.01;
  const repeats = opts.repeats ?? 2;
  const log = opts.log ?? (() => undefined);
  const pin = usePinning(true);

  const dir = await mkdtemp(join(tmpdir(), 'mm-bench-lan-'));
  await chmod(dir, 0o755);
  const sums: Record<string, string> = {};
  for (const [name, size] of Object.entries(FILES)) {
    const bytes = randomBytes(size);
    sums[name] = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(dir, name), bytes, { mode: 0o644 });
  }
  await writeFile(join(dir, 'probe'), 'x', { mode: 0o644 });

  const children: ChildProcess[] = [];
  try {
    ensureAtftp();
    const ours = await startOurs(dir, children);
    const hpa = await startTftpdHpa(dir, children);
    const lossy = { ours: await startRelay(ours, delayMs, drop, children), hpa: await startRelay(hpa, delayMs, drop, children) };
    const clean = { ours: await startRelay(ours, delayMs, 0, children), hpa: await startRelay(hpa, delayMs, 0, children) };
    log(`relays (${delayMs} ms each way, ${drop * 100}% lost each way): ours ${lossy.ours}, tftpd-hpa ${lossy.hpa}`);

    const model = `relay: ${delayMs} ms each way, ${drop * 100}% of datagrams dropped each way, both servers behind their own relay`;
    const rows: BenchRow[] = [];

    const storms = { ours: [] as Storm[], hpa: [] as Storm[] };
    for (let i = 0; i < repeats; i++) {
      for (const who of ['hpa', 'ours'] as const) {
        const s = await storm(lossy[who], clients, sums);
        log(`storm ${who}: total ${Math.round(s.totalMs)} ms, worst client ${Math.round(s.worstMs)} ms, median ${Math.round(s.medianMs)} ms, ${s.failed} fetches failed and asked again`);
        storms[who].push(s);
      }
    }
    const best = (list: Storm[]) => list.reduce((a, b) => (b.totalMs < a.totalMs ? b : a));
    const [o, h] = [best(storms.ours), best(storms.hpa)];
    const stormNote = `${clients} clients started together, each bootx64.efi (1.0 MB) then grubx64.efi (4.2 MB), blksize ${FIRMWARE.blksize}, lock-step, client timeout ${FIRMWARE.timeoutMs / 1000} s × ${FIRMWARE.retries} tries (EDK2 PXE); both servers on their default 1 s timeout; ${model}; best of ${repeats} in turns`;
    rows.push(lower(`PXE storm, ${clients} clients, total time`, o.totalMs, h.totalMs, 's', stormNote, 0.8));
    rows.push(lower(`PXE storm, ${clients} clients, worst client`, o.worstMs, h.worstMs, 's', `same runs; median client ${round(o.medianMs / 1000)} s vs ${round(h.medianMs / 1000)} s; fetches that failed and were asked again: ${o.failed} vs ${h.failed}`));

    for (const [label, relays, note] of [
      [`1 client, grubx64.efi lock-step, blksize ${FIRMWARE.blksize}, ${drop * 100}% loss`, lossy, model],
      [`1 client, grubx64.efi lock-step, blksize ${FIRMWARE.blksize}, no loss`, clean, `relay: ${delayMs} ms each way, nothing dropped`],
    ] as const) {
      let [bo, bh] = [Infinity, Infinity];
      for (let i = 0; i < repeats; i++) {
        bh = Math.min(bh, await singleVia(relays.hpa, sums));
        bo = Math.min(bo, await singleVia(relays.ours, sums));
      }
      log(`${label}: ours ${Math.round(bo)} ms, tftpd-hpa ${Math.round(bh)} ms`);
      const size = FILES['grubx64.efi'] / 2 ** 20;
      rows.push(
        higher(label, size / (bo / 1000), size / (bh / 1000), `${note}; client: the storm's (Node, firmware timeouts); ${pin ? 'servers on CPU 0, relays on CPU 1' : 'not pinned'}; best of ${repeats}`),
      );
    }
    return rows;
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

interface Storm {
  totalMs: number;
  worstMs: number;
  medianMs: number;
  /** Fetches that failed and were asked again. */
  failed: number;
}

async function storm(port: number, clients: number, sums: Record<string, string>): Promise<Storm> {
  const t0 = performance.now();
  let failed = 0;
  const times = await Promise.all(
    Array.from({ length: clients }, async () => {
      const started = performance.now();
      for (const file of Object.keys(FILES)) {
        // A failed fetch is asked again, as firmware retries a boot; it is counted.
        for (let attempt = 1; ; attempt++) {
          try {
            const r = await tftpGet({ host: '127.0.0.1', port, file, blksize: FIRMWARE.blksize, timeoutMs: FIRMWARE.timeoutMs, retries: FIRMWARE.retries });
            if (r.sha256 !== sums[file]) throw new Error(`${file} through relay port ${port}: wrong bytes`);
            break;
          } catch (err) {
            if (attempt >= 3 || /wrong bytes/.test((err as Error).message)) throw err;
            failed++;
          }
        }
      }
      return performance.now() - started;
    }),
  );
  times.sort((a, b) => a - b);
  return { totalMs: performance.now() - t0, worstMs: times.at(-1) ?? 0, medianMs: times[Math.floor(times.length / 2)] ?? 0, failed };
}

/** Wall time of one lock-step get of grubx64.efi through a relay, with the firmware's timeouts. */
async function singleVia(port: number, sums: Record<string, string>): Promise<number> {
  const r = await tftpGet({ host: '127.0.0.1', port, file: 'grubx64.efi', blksize: FIRMWARE.blksize, timeoutMs: FIRMWARE.timeoutMs, retries: FIRMWARE.retries });
  if (r.sha256 !== sums['grubx64.efi']) throw new Error(`grubx64.efi through relay port ${port}: wrong bytes`);
  return r.durationMs;
}

async function startRelay(target: number, delayMs: number, drop: number, children: ChildProcess[]): Promise<number> {
  const script = fileURLToPath(new URL('./relay.ts', import.meta.url));
  const child = spawn(
    ...pinned(1, process.execPath, ['--import', import.meta.resolve('tsx'), script, '--target', `127.0.0.1:${target}`, '--delay-ms', String(delayMs), '--drop', String(drop)]),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  for await (const line of createInterface({ input: child.stdout! })) {
    const m = /^port (\d+)$/.exec(line);
    if (m) return Number(m[1]);
  }
  throw new Error('relay exited before listening');
}

const round = (n: number) => Math.round(n * 100) / 100;

/** A time (lower is better): the ratio is ours over theirs, the target a ceiling. */
function lower(name: string, oursMs: number, theirsMs: number, unit: 's', note: string, target?: number): BenchRow {
  const ratio = round(oursMs / theirsMs);
  const goal = target === undefined ? {} : { target: `≤ ${target}`, pass: ratio <= target };
  return { group: 'lan', name, value: round(oursMs / 1000), unit, baseline: round(theirsMs / 1000), ratio, note, ...goal };
}

function higher(name: string, ours: number, theirs: number, note: string): BenchRow {
  const ratio = round(ours / theirs);
  return { group: 'lan', name, value: round(ours), unit: 'MiB/s', baseline: round(theirs), ratio, note, target: '≥ 0.95', pass: ratio >= 0.95 };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await benchLan({
    clients: Number(arg('--clients') ?? 200),
    delayMs: Number(arg('--delay-ms') ?? 0.25),
    drop: Number(arg('--drop') ?? 0.01),
    repeats: Number(arg('--repeats') ?? 2),
    log: (line) => console.error(line),
  });
  console.table(rows.map(({ group: _g, ...r }) => r));
}
