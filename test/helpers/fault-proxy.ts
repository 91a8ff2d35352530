import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import { drained } from '../../src/http/drained.js';

/**
 * A real HTTP proxy on 127.0.0.1 between the mirror and the fixture upstream:
 * it forwards every request with undici and counts the body bytes it sends
 * back, and a test's `fault` may answer instead, with the upstream's bytes
 * mutated or not at all. What the mirror sees is what a broken CDN, a
 * meddling middlebox or a hostile mirror would send.
 */

export interface ProxyRecord {
  readonly method: string;
  /** Decoded path without the leading "/" (as the fixture server logs it). */
  readonly path: string;
  readonly range: string | undefined;
  readonly conditional: boolean;
  status: number;
  /** Body bytes the proxy wrote to the client. */
  bytes: number;
  /** Name of the fault that answered, when one did. */
  fault: string | undefined;
  /** The response is over (ended, or the connection closed). */
  done: boolean;
}

export interface FetchedUpstream {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

export interface FaultContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly path: string;
  readonly record: ProxyRecord;
  /** The upstream's answer to this request (headers may be overridden; undefined drops one), read whole. */
  fetch(headers?: Record<string, string | undefined>): Promise<FetchedUpstream>;
  /** Writes body bytes, counted; resolves when the socket took them (or the client left). */
  write(chunk: Buffer): Promise<void>;
}

/** Answers the request itself and returns a name for the log, or returns undefined to let it through. */
export type Fault = (ctx: FaultContext) => Promise<string | undefined> | string | undefined;

const PASSED_REQUEST_HEADERS = ['range', 'if-none-match', 'if-modified-since', 'accept-encoding', 'user-agent'];
const PASSED_RESPONSE_HEADERS = [
  'content-length',
  'content-range',
  'content-type',
  'etag',
  'last-modified',
  'accept-ranges',
  'retry-after',
  'cache-control',
];

export class FaultProxy {
  readonly log: ProxyRecord[] = [];
  fault: Fault | undefined;
  private server: Server | undefined;
  private readonly agent = new Agent({ connections: 64, keepAliveTimeout: 1000 });
  private readonly sockets = new Set<Socket>();

  constructor(private readonly target: string) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
    });
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return this.url;
  }

  get url(): string {
    const a = this.server!.address() as AddressInfo;
    return `http://127.0.0.1:${a.port}/`;
  }

  /** Records for exactly this path, or paths matching a regex. */
  requests(path: string | RegExp): ProxyRecord[] {
    return this.log.filter((r) => (typeof path === 'string' ? r.path === path : path.test(r.path)));
  }

  /** Body bytes sent for paths matching `path`. */
  bytesFor(path: string | RegExp): number {
    return this.requests(path).reduce((n, r) => n + r.bytes, 0);
  }

  async stop(): Promise<void> {
    if (this.server) {
      for (const s of this.sockets) s.destroy();
      this.server.closeAllConnections();
      await new Promise<void>((ok) => this.server!.close(() => ok()));
      this.server = undefined;
    }
    await this.agent.close().catch(() => undefined);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    const record: ProxyRecord = {
      method: req.method ?? 'GET',
      path,
      range: req.headers.range,
      conditional: Boolean(req.headers['if-none-match'] || req.headers['if-modified-since']),
      status: 0,
      bytes: 0,
      fault: undefined,
      done: false,
    };
    this.log.push(record);
    res.on('close', () => {
      record.status ||= res.statusCode;
      record.done = true;
    });
    const write = (chunk: Buffer): Promise<void> => {
      if (res.destroyed || res.writableEnded) return Promise.resolve();
      record.bytes += chunk.length;
      if (res.write(chunk)) return Promise.resolve();
      return drained(res);
    };
    const upstreamHeaders = (over: Record<string, string | undefined> = {}) => {
      const h: Record<string, string> = {};
      for (const name of PASSED_REQUEST_HEADERS) {
        const v = req.headers[name];
        if (typeof v === 'string') h[name] = v;
      }
      for (const [k, v] of Object.entries(over)) {
        if (v === undefined) delete h[k];
        else h[k] = v;
      }
      return h;
    };
    const upstream = (over?: Record<string, string | undefined>): Promise<Dispatcher.ResponseData> =>
      request(new URL(req.url ?? '/', this.target), {
        method: req.method === 'HEAD' ? 'HEAD' : 'GET',
        headers: upstreamHeaders(over),
        dispatcher: this.agent,
      });

    if (this.fault) {
      const ctx: FaultContext = {
        req,
        res,
        path,
        record,
        async fetch(over) {
          const r = await upstream(over);
          return { status: r.statusCode, headers: pickHeaders(r.headers), body: Buffer.from(await r.body.arrayBuffer()) };
        },
        write,
      };
      const name = await this.fault(ctx);
      if (name !== undefined) {
        record.fault = name;
        if (res.headersSent || res.writableEnded) record.status ||= res.statusCode;
        return;
      }
    }

    const r = await upstream();
    record.status = r.statusCode;
    res.writeHead(r.statusCode, pickHeaders(r.headers));
    res.on('close', () => r.body.destroy());
    try {
      for await (const chunk of r.body) {
        if (res.destroyed) break;
        await write(chunk as Buffer);
      }
    } catch {
      res.destroy();
      return;
    }
    if (!res.destroyed) res.end();
  }
}

function pickHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PASSED_RESPONSE_HEADERS) {
    const v = h[name];
    if (typeof v === 'string') out[name] = v;
    else if (Array.isArray(v) && v[0] !== undefined) out[name] = v[0];
  }
  return out;
}

export async function startProxy(target: string): Promise<FaultProxy> {
  const p = new FaultProxy(target);
  await p.start();
  return p;
}

// ---------------------------------------------------------------------------
// Fault building blocks, for use inside a `fault` function.

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The whole file with its real length announced, cut after `bytes`: by a TCP reset, or by a clean close (a short body). */
export async function cutBody(ctx: FaultContext, bytes: number, how: 'reset' | 'close'): Promise<void> {
  const up = await ctx.fetch({ range: undefined });
  ctx.res.writeHead(200, { ...up.headers, 'content-length': String(up.body.length) });
  await ctx.write(up.body.subarray(0, bytes));
  await pause(30);
  const socket = ctx.res.socket;
  if (!socket) return;
  if (how === 'reset') socket.resetAndDestroy();
  else socket.end();
}

/** Sends `bytes` of the body, then nothing more: the connection stays open and silent until the client leaves. */
export async function stallBody(ctx: FaultContext, bytes: number): Promise<void> {
  const up = await ctx.fetch({ range: undefined });
  ctx.res.writeHead(200, { ...up.headers, 'content-length': String(up.body.length) });
  await ctx.write(up.body.subarray(0, bytes));
  await once(ctx.res, 'close');
}

export function answer(ctx: FaultContext, status: number, headers: Record<string, string> = {}, body = ''): void {
  ctx.res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers }).end(body);
  ctx.record.status = status;
}

/** Sends `body` as a 200 (a replaced document), ignoring conditional headers. */
export async function replaceBody(ctx: FaultContext, body: string | Buffer): Promise<void> {
  const data = Buffer.from(body);
  ctx.res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(data.length) });
  await ctx.write(data);
  ctx.res.end();
}

/**
 * Streams `total` bytes of spaces, generated on the fly, with or without a
 * Content-Length; stops when the client goes away.
 */
export async function streamSpaces(ctx: FaultContext, total: number, declareLength: boolean): Promise<void> {
  const chunk = Buffer.alloc(256 * 1024, 0x20);
  ctx.res.writeHead(200, { 'content-type': 'application/json', ...(declareLength ? { 'content-length': String(total) } : {}) });
  let sent = 0;
  while (sent < total && !ctx.res.destroyed) {
    const n = Math.min(chunk.length, total - sent);
    await ctx.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    sent += n;
  }
  if (!ctx.res.destroyed) ctx.res.end();
}
