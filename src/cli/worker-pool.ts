import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Config } from '../config/load.js';
import type { Logger } from '../log.js';
import type { HttpWorkersView, MetricJson } from '../ops/index.js';
import { isFromWorker, type FromWorker, type ToWorker } from './worker-messages.js';

/** A worker that dies is started again after this, doubled per death in a row, up to the last. */
export const RESPAWN_BACKOFF = { firstMs: 1_000, maxMs: 30_000 } as const;
/** A worker that lived this long resets the backoff: its death is not part of a crash loop. */
const STABLE_MS = 60_000;
/** Exited workers' counts kept apart before they are summed into one. */
const RETIRED_COMPACT_AT = 16;

/** How long a broadcast (publish, SIGHUP) or a metrics scrape waits for each worker's answer. */
export const WORKER_ANSWER_TIMEOUT_MS = 5_000;
/** How long start() waits for the workers to serve before it lets the primary go on. */
const START_WAIT_MS = 60_000;
/** After the drain window, workers still running get this long to leave before they are killed. */
const EXIT_GRACE_MS = 5_000;

export interface WorkerPoolOptions {
  readonly count: number;
  readonly socketPath: string;
  readonly drainMs: number;
  readonly logger: Logger;
  /** The configuration now (SIGHUP may have changed it): what a new worker starts with. */
  readonly config: () => Config;
  /** Whole log lines from a worker, for the one log stream. */
  readonly writeLog: (text: string) => void;
  /** A worker could not start serving (its listen failed): the service cannot run as configured. */
  readonly onFailed: (code: string | undefined, message: string) => void;
}

interface Pending {
  readonly waiting: Set<number>;
  readonly answers: MetricJson[];
  readonly resolve: () => void;
}

/**
 * The primary's HTTP workers (node:cluster; they share the listening
 * sockets). Keeps `count` of them running: one that dies unexpectedly is
 * logged and replaced with backoff. Publishes and reloads reach every worker
 * before broadcast() resolves; /metrics asks each for its counts.
 */
export class WorkerPool implements HttpWorkersView {
  private readonly workers = new Map<number, { worker: Worker; startedAt: number; listening: boolean; configVersion: number }>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private deaths = 0;
  private stopping = false;
  private readonly respawns = new Set<NodeJS.Timeout>();
  /** Bumped by each reconfigure(); a worker that started on an older one is sent the new one once it listens. */
  private configVersion = 0;
  /** Each live worker's latest HTTP counts, by cluster worker id. */
  private readonly lastMetrics = new Map<number, MetricJson>();
  /** The last counts of workers that exited (summed into one now and then). */
  private retired: MetricJson[] = [];
  /** Called when a worker starts serving or fails to. */
  private onChange: () => void = () => undefined;

  constructor(private readonly options: WorkerPoolOptions) {}

  /**
   * Forks the workers; resolves once every one serves (or one could not, or
   * START_WAIT_MS passed: the rest keep coming up meanwhile).
   */
  start(): Promise<void> {
    for (let i = 0; i < this.options.count; i++) this.fork();
    return new Promise((resolve) => {
      const timer = setTimeout(done, START_WAIT_MS);
      const check = () => {
        if (this.stopping || this.count().running >= this.options.count) done();
      };
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.onChange = check;
    });
  }

  count(): { configured: number; running: number } {
    let running = 0;
    for (const w of this.workers.values()) if (w.listening) running++;
    return { configured: this.options.count, running };
  }

  /** Every worker drops its caches; resolves when all have (or the answer timeout passed). */
  invalidate(): Promise<void> {
    return this.ask((id) => ({ type: 'invalidate', id })).then(() => undefined);
  }

  /** Every worker takes the new configuration and drops its caches. */
  reconfigure(config: Config): Promise<void> {
    this.configVersion++;
    return this.ask((id) => ({ type: 'config', id, config })).then(() => undefined);
  }

  /**
   * The HTTP counts of every worker that ever ran: the latest answer of each live one (or its last
   * known, when it did not answer in time) and the last of those gone. Summed, a counter never goes
   * down when a worker dies, restarts or is slow: Prometheus would read that as a reset.
   */
  async metrics(): Promise<MetricJson[]> {
    await this.ask((id) => ({ type: 'metrics', id }));
    if (this.retired.length > RETIRED_COMPACT_AT) this.retired = [(await AggregatorRegistry.aggregate(this.retired).getMetricsAsJSON()) as MetricJson];
    return [...this.lastMetrics.values(), ...this.retired];
  }

  /** Every worker stops accepting and finishes what runs within the drain window; resolves when all have left. */
  async drain(): Promise<void> {
    this.stopping = true;
    for (const t of this.respawns) clearTimeout(t);
    this.respawns.clear();
    const left = [...this.workers.values()].map(({ worker }) => new Promise<void>((resolve) => {
      if (worker.isDead()) return resolve();
      worker.once('exit', () => resolve());
      send(worker, { type: 'drain' });
    }));
    const kill = setTimeout(() => {
      for (const { worker } of this.workers.values()) {
        this.options.logger.warn({ worker: worker.id, pid: worker.process.pid }, 'HTTP worker still running after the drain window: killed');
        worker.process.kill('SIGKILL');
      }
    }, this.options.drainMs + EXIT_GRACE_MS);
    await Promise.all(left);
    clearTimeout(kill);
  }

  private fork(): void {
    const worker = cluster.fork();
    const entry = { worker, startedAt: Date.now(), listening: false, configVersion: this.configVersion };
    this.workers.set(worker.id, entry);
    worker.on('message', (msg: unknown) => {
      if (isFromWorker(msg)) this.onMessage(worker, msg);
    });
    worker.once('exit', (code, signal) => this.onExit(worker, code, signal, entry.startedAt));
  }

  private onMessage(worker: Worker, msg: FromWorker): void {
    switch (msg.type) {
      case 'hello': {
        // A worker forked just before SIGTERM must not start serving now.
        if (this.stopping) {
          send(worker, { type: 'drain' });
          break;
        }
        const entry = this.workers.get(worker.id);
        if (entry) entry.configVersion = this.configVersion;
        send(worker, { type: 'start', config: this.options.config(), socketPath: this.options.socketPath, drainMs: this.options.drainMs });
        break;
      }
      case 'log':
        this.options.writeLog(msg.text);
        break;
      case 'failed':
        this.stopping = true;
        this.options.onFailed(msg.code, msg.message);
        this.onChange();
        break;
      case 'listening': {
        const entry = this.workers.get(worker.id);
        if (entry) entry.listening = true;
        // A SIGHUP between its start and now did not reach it (only listening workers are asked).
        if (entry && entry.configVersion !== this.configVersion) {
          entry.configVersion = this.configVersion;
          send(worker, { type: 'config', id: this.nextId++, config: this.options.config() });
        }
        this.onChange();
        break;
      }
      case 'ack':
      case 'metrics': {
        const p = this.pending.get(msg.id);
        if (!p) return;
        if (msg.type === 'metrics') {
          p.answers.push(msg.json);
          this.lastMetrics.set(worker.id, msg.json);
        }
        this.answered(msg.id, worker.id);
        break;
      }
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null, startedAt: number): void {
    this.workers.delete(worker.id);
    const last = this.lastMetrics.get(worker.id);
    if (last) this.retired.push(last);
    this.lastMetrics.delete(worker.id);
    for (const id of this.pending.keys()) this.answered(id, worker.id);
    if (this.stopping) return;
    if (Date.now() - startedAt >= STABLE_MS) this.deaths = 0;
    const delay = Math.min(RESPAWN_BACKOFF.maxMs, RESPAWN_BACKOFF.firstMs * 2 ** this.deaths);
    this.deaths++;
    this.options.logger.error(
      { worker: worker.id, pid: worker.process.pid, exitCode: code, signal, respawnInMs: delay },
      `HTTP worker ${worker.id} exited unexpectedly; starting another in ${delay} ms`,
    );
    const timer = setTimeout(() => {
      this.respawns.delete(timer);
      if (!this.stopping) this.fork();
    }, delay);
    this.respawns.add(timer);
  }

  /** Sends a request to every worker; resolves with their answers once each answered, left, or timed out. */
  private ask(make: (id: number) => ToWorker): Promise<MetricJson[]> {
    const id = this.nextId++;
    const targets = [...this.workers.values()].filter((w) => w.listening).map((w) => w.worker);
    return new Promise((resolve) => {
      const answers: MetricJson[] = [];
      const timer = setTimeout(() => {
        if (!this.pending.has(id)) return;
        this.options.logger.warn({ waiting: [...(this.pending.get(id)?.waiting ?? [])] }, 'HTTP workers did not answer in time');
        this.pending.delete(id);
        resolve(answers);
      }, WORKER_ANSWER_TIMEOUT_MS);
      const entry: Pending = {
        waiting: new Set(targets.map((w) => w.id)),
        answers,
        resolve: () => {
          clearTimeout(timer);
          this.pending.delete(id);
          resolve(answers);
        },
      };
      this.pending.set(id, entry);
      if (entry.waiting.size === 0) return entry.resolve();
      for (const w of targets) send(w, make(id));
    });
  }

  private answered(id: number, workerId: number): void {
    const p = this.pending.get(id);
    if (!p || !p.waiting.delete(workerId)) return;
    if (p.waiting.size === 0) p.resolve();
  }
}

function send(worker: Worker, msg: ToWorker): void {
  if (worker.isConnected()) worker.send(msg);
}
