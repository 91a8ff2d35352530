/**
 * The clients of test/faults/load.test.ts, in their own process (forked with
 * tsx), as real PXE clients and MAAS racks are: their hashing and sockets do
 * not share the daemon's event loop or its libuv thread pool.
 *
 * Parent → child: { type: 'start', plan } then { type: 'stop' }.
 * Child → parent: { type: 'progress', done } now and then, { type: 'result', done: Done[] } at the end.
 */
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import { tftpGet } from '../../src/tftp/client.js';

export interface LoadPlan {
  readonly http: readonly string[];
  readonly tftp: readonly string[];
  readonly tftpHost: string;
  readonly tftpPort: number;
  readonly httpWorkers: number;
  readonly tftpWorkers: number;
  /** Per worker, so a run that never stops is still bounded. */
  readonly maxPerHttpWorker: number;
  readonly maxPerTftpWorker: number;
}

export interface LoadDone {
  readonly kind: 'http' | 'tftp';
  /** Index into plan.http or plan.tftp. */
  readonly target: number;
  readonly start: number;
  readonly end: number;
  readonly bytes: number;
  readonly status?: number;
  readonly sha256?: string;
  readonly error?: string;
}

type Message = { type: 'start'; plan: LoadPlan } | { type: 'stop' };

async function runLoad(plan: LoadPlan, stopped: () => boolean, done: LoadDone[]): Promise<void> {
  const agent = new Agent({ connections: plan.httpWorkers + 8, keepAliveTimeout: 5000 });
  let n = 0;
  const httpWorker = async () => {
    for (let i = 0; !stopped() && i < plan.maxPerHttpWorker; i++) {
      const target = n++ % plan.http.length;
      const start = Date.now();
      let bytes = 0;
      try {
        const res = await request(plan.http[target]!, { dispatcher: agent });
        const h = createHash('sha256');
        for await (const chunk of res.body) {
          bytes += (chunk as Buffer).length;
          h.update(chunk as Buffer);
        }
        done.push({ kind: 'http', target, start, end: Date.now(), bytes, status: res.statusCode, sha256: h.digest('hex') });
      } catch (err) {
        done.push({ kind: 'http', target, start, end: Date.now(), bytes, error: (err as Error).message });
      }
    }
  };
  const tftpWorker = async (w: number) => {
    // One client per address, as PXE clients are; the per-client limit is not what is tested.
    const localAddress = `127.0.0.${10 + w}`;
    for (let i = 0; !stopped() && i < plan.maxPerTftpWorker; i++) {
      const target = n++ % plan.tftp.length;
      const start = Date.now();
      try {
        const r = await tftpGet({ host: plan.tftpHost, port: plan.tftpPort, file: plan.tftp[target]!, blksize: 1468, localAddress, timeoutMs: 2000 });
        done.push({ kind: 'tftp', target, start, end: Date.now(), bytes: r.bytes, sha256: r.sha256 });
      } catch (err) {
        done.push({ kind: 'tftp', target, start, end: Date.now(), bytes: 0, error: (err as Error).message });
      }
    }
  };
  await Promise.all([
    ...Array.from({ length: plan.httpWorkers }, () => httpWorker()),
    ...Array.from({ length: plan.tftpWorkers }, (_, w) => tftpWorker(w)),
  ]);
  await agent.close();
}

if (process.send) {
  let stop = false;
  const done: LoadDone[] = [];
  process.on('message', (m: Message) => {
    if (m.type === 'stop') stop = true;
    if (m.type !== 'start') return;
    const ticker = setInterval(() => process.send!({ type: 'progress', done: done.length }), 50);
    runLoad(m.plan, () => stop, done).then(
      () => {
        clearInterval(ticker);
        process.send!({ type: 'result', done }, () => process.exit(0));
      },
      (err: unknown) => {
        clearInterval(ticker);
        process.send!({ type: 'error', message: String(err) }, () => process.exit(1));
      },
    );
  });
}
