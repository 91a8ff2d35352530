import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { TftpWorkerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TftpClient } from './files.js';
import type { OptionList } from './packet.js';
import type { ServeSettings } from './serve-request.js';
import type { TransferResult } from './transfer.js';
import type { FromWorker, ToWorker, TftpWorkerOpener, WorkerStart } from './worker-messages.js';

/** How long a worker may take to load its opener (the TypeScript sources are compiled on the fly in tests). */
const READY_TIMEOUT_MS = 30_000;
/** Respawn delays after a crash: doubling from the first, capped at the last. */
const RESPAWN_MIN_MS = 100;
const RESPAWN_MAX_MS = 10_000;
/** A worker that ran this long without crashing starts the backoff over. */
const STABLE_MS = 60_000;
/** On stop, how long workers get to send their last ERRORs before they are terminated. */
const STOP_WAIT_MS = 2_000;

/** What the server hands a worker: an admitted request. */
export interface WorkerJob {
  readonly name: string;
  readonly client: TftpClient;
  readonly mode: string;
  readonly options: OptionList;
  readonly host: string;
  readonly type: 'udp4' | 'udp6';
  /** performance.now() of the main thread when the request came in. */
  readonly started: number;
}

/** The server's side of one job: called from the worker's messages (or a crash). */
export interface WorkerJobEvents {
  reply(code: number, message: string): void;
  end(result: TransferResult, bytes: number, retransmits: number): void;
}

/** A job running in a worker, as the server's slot sees it (shaped like a ReadTransfer). */
export interface RemoteTransfer {
  readonly worker: number;
  readonly acknowledged: boolean;
  /** Ends it silently; its slot is released at once (admission needs it now). */
  evict(): void;
  /** Ends it with an ERROR to the client; the slot is released when the worker reports the end. */
  abort(message: string, result: TransferResult): void;
}

interface Job extends RemoteTransfer {
  acknowledged: boolean;
  readonly events: WorkerJobEvents;
}

interface Thread {
  readonly index: number;
  worker: Worker | undefined;
  ready: boolean;
  readonly jobs: Map<number, Job>;
  bornAt: number;
  crashes: number;
  respawn: NodeJS.Timeout | undefined;
  stopped: (() => void) | undefined;
}

export interface WorkerPoolOptions {
  readonly count: number;
  readonly opener: TftpWorkerOpener;
  readonly settings: ServeSettings;
  readonly logger: Logger;
  /** DATA payload bytes the workers sent (retransmissions included). */
  readonly onSent: (bytes: number) => void;
}

/**
 * The worker threads that run TFTP transfers. Each job goes to the ready
 * worker with the fewest; a worker that dies ends its jobs as errors and is
 * started again after a growing delay.
 */
export class WorkerPool {
  private readonly threads: Thread[] = [];
  private nextId = 1;
  private rotate = 0;
  private stopping = false;

  /** The opener new workers start with: the latest reloaded data. */
  private opener: TftpWorkerOpener;

  constructor(private readonly o: WorkerPoolOptions) {
    this.opener = o.opener;
    for (let i = 0; i < o.count; i++) {
      this.threads.push({ index: i, worker: undefined, ready: false, jobs: new Map(), bornAt: 0, crashes: 0, respawn: undefined, stopped: undefined });
    }
  }

  /** Starts every worker; rejects (and stops them) when one cannot load its opener. */
  async start(): Promise<void> {
    try {
      await Promise.all(this.threads.map((t) => this.spawn(t)));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Jobs per worker, by index (for tests and the status of the pool). */
  get load(): number[] {
    return this.threads.map((t) => t.jobs.size);
  }

  /** Runs a job on the least busy ready worker; undefined when none is ready (all crashed and waiting). */
  dispatch(job: WorkerJob, events: WorkerJobEvents): RemoteTransfer | undefined {
    const thread = this.leastBusy();
    if (!thread?.worker) return undefined;
    const id = this.nextId++;
    const worker = thread.worker;
    const post = (m: ToWorker) => worker.postMessage(m);
    const remote: Job = {
      worker: thread.index,
      acknowledged: false,
      events,
      evict: () => {
        if (!thread.jobs.delete(id)) return;
        post({ op: 'evict', id });
        events.end('evicted', 0, 0);
      },
      abort: (message, result) => {
        if (thread.jobs.has(id)) post({ op: 'abort', id, message, result });
      },
    };
    const { started, ...rest } = job;
    post({ op: 'transfer', id, ...rest, startedAt: performance.timeOrigin + started });
    thread.jobs.set(id, remote);
    return remote;
  }

  /** Tells every worker to drop its caches, with new opener data or (undefined) the old. */
  reload(data: unknown): void {
    // A worker started later (a restart) must start from the new data, not from the first.
    if (data !== undefined) this.opener = { ...this.opener, data };
    // One still starting gets it too: its messages wait until it listens.
    for (const t of this.threads) t.worker?.postMessage({ op: 'reload', data } satisfies ToWorker);
  }

  /** Aborts what still runs (the server waited for its deadline before), then ends the threads. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.threads.map((t) => this.stopThread(t)));
  }

  private async stopThread(t: Thread): Promise<void> {
    clearTimeout(t.respawn);
    const worker = t.worker;
    if (!worker) return;
    if (t.ready) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, STOP_WAIT_MS);
        t.stopped = () => {
          clearTimeout(timer);
          resolve();
        };
        worker.postMessage({ op: 'stop' } satisfies ToWorker);
      });
    }
    t.worker = undefined;
    t.ready = false;
    // Whatever did not report its end is given up with the thread.
    this.endAll(t, 'shutdown');
    await worker.terminate();
  }

  private leastBusy(): Thread | undefined {
    let best: Thread | undefined;
    const n = this.threads.length;
    // Ties go round the workers, so short transfers one after another still spread.
    const from = this.rotate++ % n;
    for (let k = 0; k < n; k++) {
      const t = this.threads[(from + k) % n]!;
      if (t.ready && t.worker && (!best || t.jobs.size < best.jobs.size)) best = t;
    }
    return best;
  }

  private spawn(t: Thread): Promise<void> {
    const data: WorkerStart = { index: t.index, opener: this.opener, settings: this.o.settings, logLevel: this.o.logger.level };
    const worker = newWorker(data);
    t.worker = worker;
    t.ready = false;
    t.bornAt = Date.now();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new TftpWorkerError(t.index, `not ready within ${READY_TIMEOUT_MS / 1000} s`));
        if (t.worker === worker) t.worker = undefined;
        void worker.terminate();
      }, READY_TIMEOUT_MS);
      worker.on('message', (m: FromWorker) => {
        if (m.op === 'ready') {
          clearTimeout(timer);
          // A ready that arrives after the start timed out belongs to a thread being terminated.
          if (t.worker !== worker) return;
          t.ready = true;
          resolve();
          return;
        }
        this.onMessage(t, m);
      });
      worker.on('error', (err) => {
        clearTimeout(timer);
        if (!t.ready) reject(new TftpWorkerError(t.index, err.message, { cause: err }));
        else this.o.logger.error({ err, worker: t.index }, 'TFTP worker thread failed');
      });
      worker.on('exit', (code) => {
        clearTimeout(timer);
        if (t.worker !== worker) return;
        const wasReady = t.ready;
        t.worker = undefined;
        t.ready = false;
        if (!wasReady) reject(new TftpWorkerError(t.index, `exited with code ${code} while starting`));
        if (!this.stopping) this.onCrash(t, code);
      });
    });
  }

  private onMessage(t: Thread, m: FromWorker): void {
    switch (m.op) {
      case 'log':
        this.replayLog(t, m.line);
        return;
      case 'sent':
        this.o.onSent(m.bytes);
        return;
      case 'stopped':
        t.stopped?.();
        return;
      case 'reply':
        t.jobs.get(m.id)?.events.reply(m.code, m.message);
        return;
      case 'acked': {
        const job = t.jobs.get(m.id);
        if (job) job.acknowledged = true;
        return;
      }
      case 'end': {
        const job = t.jobs.get(m.id);
        if (!job) return;
        t.jobs.delete(m.id);
        job.events.end(m.result, m.bytes, m.retransmits);
        return;
      }
      default:
        return;
    }
  }

  /** A worker's log line, written by the server's logger with the worker's index added. */
  private replayLog(t: Thread, line: string): void {
    try {
      const { level, msg, time: _time, app: _app, ...fields } = JSON.parse(line) as Record<string, unknown>;
      const write = this.o.logger[level as 'info'] as Logger['info'] | undefined;
      if (typeof write === 'function') write.call(this.o.logger, { worker: t.index, ...fields }, String(msg ?? ''));
    } catch (err) {
      this.o.logger.error({ err, worker: t.index }, 'TFTP worker sent a log line that is not JSON');
    }
  }

  private onCrash(t: Thread, code: number): void {
    const lost = t.jobs.size;
    this.endAll(t, 'error');
    if (Date.now() - t.bornAt > STABLE_MS) t.crashes = 0;
    const delay = Math.min(RESPAWN_MAX_MS, RESPAWN_MIN_MS * 2 ** t.crashes);
    t.crashes++;
    this.o.logger.error(
      { worker: t.index, code, transfers: lost, restartInMs: delay },
      'TFTP worker thread exited; its transfers ended as errors and it is started again',
    );
    t.respawn = setTimeout(() => {
      t.respawn = undefined;
      if (this.stopping) return;
      this.spawn(t).then(
        () => this.o.logger.info({ worker: t.index }, 'TFTP worker thread started again'),
        () => undefined, // its exit handler logged it and scheduled the next try
      );
    }, delay);
  }

  private endAll(t: Thread, result: TransferResult): void {
    const jobs = [...t.jobs.values()];
    t.jobs.clear();
    for (const job of jobs) job.events.end(result, 0, 0);
  }
}

/**
 * A worker from the compiled worker.js, or under tsx/vitest from worker.ts
 * with tsx's loader registered first (a worker thread does not inherit the
 * parent's loaders, and --import in execArgv does not reach its entry).
 */
function newWorker(data: WorkerStart): Worker {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return new Worker(new URL('./worker.js', self), { workerData: data, execArgv: [] });
  const tsxApi = pathToFileURL(createRequire(self).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  const entry = new URL('./worker.ts', self).href;
  const boot = `import(${JSON.stringify(tsxApi)}).then((api) => api.register()).then(() => import(${JSON.stringify(entry)}));`;
  return new Worker(boot, { eval: true, workerData: data, execArgv: [] });
}
