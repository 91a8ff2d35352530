import type { IncomingMessage, ServerResponse } from 'node:http';
import { pino } from 'pino';
import type { Logger } from '../log.js';

const BYTES = Symbol('access-log bytes');
const START = Symbol('access-log start');
const LOG = Symbol('access-log');
const TARGET = Symbol('access-log target');
const COUNTED = Symbol('access-log counted by writes');
const MAX_LOGGED_PATH = 1024;

/** What the access log keeps on a response: plain properties, set on every response alike. */
interface Watched extends ServerResponse {
  [BYTES]?: number;
  [START]?: number;
  [LOG]?: AccessLog;
  /** req.url as it arrived: express rewrites req.url inside a mounted router (/api/v1/sync becomes /sync). */
  [TARGET]?: string;
  [COUNTED]?: boolean;
}

/** Body bytes handed to the response, for the access log. */
export function addBytes(res: ServerResponse, n: number): void {
  const w = res as Watched;
  if (w[COUNTED] === true) return;
  w[BYTES] = (w[BYTES] ?? 0) + n;
}

function chunkLength(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === 'string') return Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return chunk.byteLength;
  return 0;
}

/**
 * Counts body bytes at write()/end() for responses written by code that does
 * not call addBytes (express routes: API, status page, metrics). The file
 * handler's hot path calls addBytes instead and skips this wrapping.
 */
function countWrites(req: IncomingMessage, res: Watched): void {
  res[COUNTED] = true;
  if (req.method === 'HEAD') return;
  const write = res.write;
  const end = res.end;
  res.write = function (this: Watched, chunk: unknown, ...rest: unknown[]) {
    this[BYTES] = (this[BYTES] ?? 0) + chunkLength(chunk, rest[0]);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as ServerResponse['write'];
  res.end = function (this: Watched, ...args: unknown[]) {
    if (typeof args[0] !== 'function') this[BYTES] = (this[BYTES] ?? 0) + chunkLength(args[0], args[1]);
    return (end as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['end'];
}

/** The logged path: the request's path as it arrived, without the query (which may carry anything a client typed). */
function loggedPath(url: string): { path: string; query: boolean } {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  return { path: path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path, query: q >= 0 };
}

/**
 * One listener shared by every response (`this` is the response): a closure
 * and a once-wrapper per request, and a WeakMap entry for the byte count,
 * cost a cached answer more than the line itself (measured).
 */
function onClose(this: Watched): void {
  this[LOG]?.line(this, performance.now() - (this[START] ?? 0));
}


interface Sink {
  write(line: string): unknown;
}

/**
 * One JSON line per request, in the shape pino gives every other line
 * (level, time, the logger's bindings, the fields, msg). The fields are fixed
 * and hold no secrets, so the line is put together directly and written to
 * the logger's own destination: pino's general path (redaction, serializers)
 * cost a quarter of a cached metadata answer.
 */
export class AccessLog {
  private readonly sink: Sink;
  private readonly bindings: string;
  private lastMs = -1;
  private lastIso = '';
  private pending = '';
  private scheduled = false;

  constructor(private readonly logger: Logger) {
    const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as Sink | undefined;
    if (typeof stream?.write !== 'function') throw new Error('the access log needs a pino logger with a destination');
    this.sink = stream;
    this.bindings = Object.entries(logger.bindings())
      .map(([k, v]) => `,${JSON.stringify(k)}:${JSON.stringify(v)}`)
      .join('');
  }

  /**
   * Writes the line once the response is over, whether it finished or the
   * client went away. `countWrites`: for responses whose writer does not call
   * addBytes (express routes).
   */
  watch(req: IncomingMessage, res: ServerResponse, options: { countWrites?: boolean } = {}): void {
    if (!this.logger.isLevelEnabled('info')) return;
    const w = res as Watched;
    w[START] = performance.now();
    w[BYTES] = 0;
    w[LOG] = this;
    w[TARGET] = req.url ?? '';
    if (options.countWrites === true) countWrites(req, w);
    // 'close' comes once per response, whether it finished or the client went away.
    res.on('close', onClose);
  }

  /** @internal */
  line(res: Watched, ms: number): void {
    const req = res.req;
    const { path, query } = loggedPath(res[TARGET] ?? req.url ?? '');
    const bytes = res[BYTES] ?? 0;
    const rounded = Math.round(ms * 100) / 100;
    const client = req.socket.remoteAddress;
    const aborted = !res.writableFinished;
    this.queue(
      `{"level":"info","time":"${this.isoNow()}"${this.bindings},"method":${JSON.stringify(req.method ?? '')},"path":${JSON.stringify(path)}` +
        `${query ? ',"query":true' : ''},"status":${res.statusCode},"bytes":${bytes},"ms":${rounded}${client === undefined ? '' : `,"client":${JSON.stringify(client)}`}` +
        `${aborted ? ',"aborted":true' : ''},"msg":"request"}\n`,
    );
  }

  /**
   * Lines go out together, at most a millisecond after the first one: under
   * load that is dozens per write. A write per line, or a setImmediate per
   * loop turn (it makes the loop spin once more without waiting), cost a
   * metadata answer more than building the line did (measured).
   */
  private queue(line: string): void {
    this.pending += line;
    if (this.pending.length >= 64 * 1024) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(this.flushLater, 1);
    }
  }

  private readonly flushLater = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private flush(): void {
    if (this.pending === '') return;
    const out = this.pending;
    this.pending = '';
    this.sink.write(out);
  }

  /** toISOString costs more than the rest of the line; at thousands of lines a second most share a millisecond. */
  private isoNow(): string {
    const now = Date.now();
    if (now !== this.lastMs) {
      this.lastMs = now;
      this.lastIso = new Date(now).toISOString();
    }
    return this.lastIso;
  }
}
