import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { createLogger } from '../log.js';
import { serveRequest } from './serve-request.js';
import type { ReadTransfer, TransferResult } from './transfer.js';
import type { FromWorker, ToWorker, WorkerOpener, WorkerOpenerFactory, WorkerStart } from './worker-messages.js';

/**
 * A TFTP worker thread: opens files with its own opener, owns the transfer
 * sockets of the transfers the main thread hands it, and reports back what
 * the main thread needs for its slots, metrics and logs. Admission (limits,
 * eviction, repeats) stays in the main thread.
 */

/** Sent-byte counts are batched: one message per transfer end or per this interval. */
const SENT_FLUSH_MS = 200;
/** On stop, time for the last ERROR packets to leave before the thread says it is done. */
const STOP_SEND_GRACE_MS = 50;

interface Running {
  transfer: ReadTransfer | undefined;
  cancelled: boolean;
  readonly opening: AbortController;
}

const port = parentPort!;
const start = workerData as WorkerStart;
const post = (m: FromWorker) => port.postMessage(m);
// Lines go to the main thread's logger, which adds the worker field: one log stream for the process.
const logger = createLogger({ level: start.logLevel, destination: { write: (line: string) => post({ op: 'log', line }) } });
const running = new Map<number, Running>();
let unsentBytes = 0;

function flushSent(): void {
  if (unsentBytes === 0) return;
  post({ op: 'sent', bytes: unsentBytes });
  unsentBytes = 0;
}
setInterval(flushSent, SENT_FLUSH_MS);

function end(id: number, result: TransferResult, bytes: number, retransmits: number): void {
  if (!running.delete(id)) return;
  flushSent();
  post({ op: 'end', id, result, bytes, retransmits });
}

function runTransfer(opener: WorkerOpener, m: Extract<ToWorker, { op: 'transfer' }>): void {
  const r: Running = { transfer: undefined, cancelled: false, opening: new AbortController() };
  running.set(m.id, r);
  serveRequest(opener.open, start.settings, logger, {
    name: m.name,
    client: m.client,
    mode: m.mode,
    options: m.options,
    host: m.host,
    type: m.type,
    started: m.startedAt - performance.timeOrigin,
    signal: r.opening.signal,
    cancelled: () => r.cancelled,
    reply: (code, message) => post({ op: 'reply', id: m.id, code, message }),
    onTransfer: (t) => (r.transfer = t),
    onSent: (bytes) => (unsentBytes += bytes),
    onAcknowledged: () => post({ op: 'acked', id: m.id }),
    release: (result, bytes, retransmits) => end(m.id, result, bytes, retransmits),
  }).catch((err: unknown) => {
    logger.error({ err }, 'TFTP request handling failed');
    if (r.transfer) r.transfer.abort('server error', 'error');
    else end(m.id, 'error', 0, 0);
  });
}

/** Gives up a transfer whose file is still being opened; serveRequest closes the file when the open returns. */
function cancel(id: number, result: TransferResult): void {
  const r = running.get(id);
  if (!r) return;
  r.cancelled = true;
  r.opening.abort();
  end(id, result, 0, 0);
}

async function stop(): Promise<void> {
  for (const [id, r] of [...running]) {
    if (r.transfer) r.transfer.abort('server shutting down', 'shutdown');
    else cancel(id, 'shutdown');
  }
  flushSent();
  await new Promise((resolve) => setTimeout(resolve, STOP_SEND_GRACE_MS));
  post({ op: 'stopped' });
}

async function main(): Promise<void> {
  const mod = (await import(start.opener.module)) as Record<string, unknown>;
  const factory = mod[start.opener.name];
  if (typeof factory !== 'function') throw new Error(`${start.opener.module} has no function ${start.opener.name}`);
  const opener = await (factory as WorkerOpenerFactory)(start.opener.data, logger);
  port.on('message', (m: ToWorker) => {
    switch (m.op) {
      case 'transfer':
        runTransfer(opener, m);
        return;
      case 'evict': {
        const r = running.get(m.id);
        // The client's first ACK may have crossed the eviction: an acknowledged transfer is not given up.
        // Its slot is already free in the main thread, so the server holds one transfer more than its cap, briefly.
        if (r?.transfer?.acknowledged) return;
        if (r?.transfer) r.transfer.evict();
        else cancel(m.id, 'evicted');
        return;
      }
      case 'abort': {
        const r = running.get(m.id);
        if (r?.transfer) r.transfer.abort(m.message, m.result);
        else cancel(m.id, m.result);
        return;
      }
      case 'reload':
        opener.reload(m.data);
        return;
      case 'stop':
        void stop();
        return;
    }
  });
  post({ op: 'ready' });
}

// A failure to load the opener ends the thread with that error: the main thread reports it.
await main();
