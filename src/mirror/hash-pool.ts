import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * SHA-256 off the main thread. Hashing runs at ~400 MB/s per core on CPUs
 * without SHA extensions: on the event loop it would cap a sync at that
 * speed for all downloads together. Each download streams its bytes to one
 * worker of the pool (batched, transferred without a copy) and asks for the
 * digest at the end. Workers are plain JS (eval), so they run the same from
 * the TypeScript sources and from the compiled build.
 */

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { open } = require('node:fs/promises');
const hashes = new Map();
const spare = [];
parentPort.on('message', async (m) => {
  try {
    if (m.op === 'update') {
      let h = hashes.get(m.id);
      if (!h) hashes.set(m.id, (h = createHash('sha256')));
      h.update(new Uint8Array(m.data, 0, m.length));
      // The buffer goes back to be filled again: memory stays a few MB whatever the volume.
      parentPort.postMessage({ id: m.id, op: 'ack', bytes: m.length, data: m.data }, [m.data]);
    } else if (m.op === 'file') {
      let h = hashes.get(m.id);
      if (!h) hashes.set(m.id, (h = createHash('sha256')));
      hashes.set(m.id, h);
      // Messages after this one for the same id wait for it: the pool awaits the reply.
      // Read into reused buffers: a stream's fresh 1 MiB chunks pile up as garbage at hashing speed.
      const buf = spare.pop() || Buffer.allocUnsafe(1 << 20);
      const fh = await open(m.path, 'r');
      try {
        for (let pos = m.from || 0; pos < m.length; ) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, m.length - pos), pos);
          if (bytesRead === 0) throw new Error(m.path + ' ends before byte ' + m.length);
          h.update(buf.subarray(0, bytesRead));
          pos += bytesRead;
        }
      } finally {
        spare.push(buf);
        await fh.close();
      }
      parentPort.postMessage({ id: m.id, op: 'file' });
    } else if (m.op === 'digest') {
      const h = hashes.get(m.id) ?? createHash('sha256');
      hashes.delete(m.id);
      parentPort.postMessage({ id: m.id, op: 'digest', hex: h.digest('hex') });
    } else if (m.op === 'drop') {
      hashes.delete(m.id);
    }
  } catch (err) {
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, op: 'error', message: String(err && err.message || err) });
  }
});
`;

const BATCH = 1 << 20;
/** Bytes sent to a worker and not yet hashed, beyond which the download waits: memory stays bounded. */
const MAX_IN_FLIGHT = 8 << 20;
const MAX_SPARE = 64;

interface Waiter {
  resolve(v: string): void;
  reject(e: Error): void;
}

export class HashPool {
  private readonly workers: Worker[] = [];
  private readonly waiters = new Map<number, Waiter>();
  private nextId = 1;
  private next = 0;
  private broken: Error | undefined;
  /** @internal */
  readonly hashes = new Map<number, PooledHash>();
  /** @internal Batch buffers back from the workers, ready to be filled again. */
  readonly spare: ArrayBuffer[] = [];
  private closing = false;

  constructor(size = Math.max(1, Math.min(4, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      // execArgv: [] so flags like --input-type=module or loaders of the parent do not apply to this CommonJS snippet.
      const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
      w.on('message', (m: { id: number; op: string; hex?: string; message?: string; bytes?: number; data?: ArrayBuffer }) => {
        if (m.op === 'ack') {
          if (m.data) this.recycle(m.data);
          this.hashes.get(m.id)?.acked(m.bytes ?? 0);
          return;
        }
        const waiter = this.waiters.get(m.id);
        if (!waiter) return;
        this.waiters.delete(m.id);
        if (m.op === 'error') waiter.reject(new Error(`hashing failed: ${m.message}`));
        else waiter.resolve(m.hex ?? '');
      });
      const fail = (err: Error) => {
        this.broken = err;
        for (const [, wt] of this.waiters) wt.reject(err);
        this.waiters.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (!this.closing) fail(new Error(`a hashing worker exited (code ${code})`));
      });
      this.workers.push(w);
    }
  }

  /** Keeps a batch buffer for the next download (a few dozen at most). */
  private recycle(data: ArrayBuffer): void {
    if (this.spare.length < MAX_SPARE) this.spare.push(data);
  }

  /** A hasher bound to one worker (round robin). */
  create(): PooledHash {
    const worker = this.workers[this.next++ % this.workers.length]!;
    const h = new PooledHash(this, worker, this.nextId++);
    this.hashes.set(h.id, h);
    return h;
  }

  /** @internal */
  request(worker: Worker, id: number, message: object, transfer: ArrayBuffer[] = []): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.broken) return reject(this.broken);
      this.waiters.set(id, { resolve, reject });
      worker.postMessage(message, transfer);
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

export class PooledHash {
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private done = false;

  constructor(
    private readonly pool: HashPool,
    private readonly worker: Worker,
    readonly id: number,
  ) {}

  /** @internal */
  acked(bytes: number): void {
    this.inFlight -= bytes;
    if (this.drained && this.inFlight <= MAX_IN_FLIGHT / 2) {
      const d = this.drained;
      this.drained = undefined;
      d();
    }
  }

  /** A batch buffer (a recycled one when there is one) to fill and pass to update. */
  buffer(): ArrayBuffer {
    return this.pool.spare.pop() ?? new ArrayBuffer(BATCH);
  }

  /**
   * Hands over a buffer the caller filled (and will not touch again): it is
   * transferred, not copied, and comes back to the pool for reuse. Resolves
   * at once, or once the worker has caught up.
   */
  update(data: ArrayBuffer, length: number): Promise<void> | undefined {
    this.inFlight += length;
    this.worker.postMessage({ op: 'update', id: this.id, data, length }, [data]);
    if (this.inFlight <= MAX_IN_FLIGHT) return undefined;
    return new Promise((ok) => (this.drained = ok));
  }

  /** Hash bytes `from` up to `length` of a file (a partial download being resumed, or the parts of a striped one in order). */
  async updateFromFile(path: string, length: number, from = 0): Promise<void> {
    if (length > from) await this.pool.request(this.worker, this.id, { op: 'file', id: this.id, path, length, from });
  }

  async digest(): Promise<string> {
    this.done = true;
    this.pool.hashes.delete(this.id);
    return this.pool.request(this.worker, this.id, { op: 'digest', id: this.id });
  }

  /** Forget this hash (the download failed). */
  drop(): void {
    this.pool.hashes.delete(this.id);
    this.drained?.();
    this.drained = undefined;
    if (this.done) return;
    this.done = true;
    this.worker.postMessage({ op: 'drop', id: this.id });
  }
}
