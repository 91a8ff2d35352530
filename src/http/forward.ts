import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { PrimaryUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import { addBytes } from './access-log.js';
import { sendError } from './errors.js';

/**
 * With http.workers above 1, a worker answers what it can itself and hands
 * the rest (API, metrics, status, uploads, pull-through) to the one process
 * that owns that state, over a unix socket only that process's user can open.
 * Bodies are streamed both ways: nothing is held in memory.
 */

/** The client's address, set by the worker on each forwarded request (and never taken from a client). */
export const CLIENT_HEADER = 'x-maas-mirror-client';

/** Per connection, not end to end: the worker speaks its own with the client. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'expect', CLIENT_HEADER]);

export interface Forwarder {
  /** Answers `res` with what the owner answers to `req`, status, headers and body as they come. */
  (req: IncomingMessage, res: ServerResponse): void;
  /** Ends the idle connections to the owner. */
  close(): void;
}

/**
 * `maxSockets` bounds the connections to the owner: give it the worker's
 * http.maxConnections, so that a long transfer never waits behind others.
 */
export function createForwarder(socketPath: string, logger: Logger, maxSockets: number): Forwarder {
  const agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: 64 });
  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const headers: [string, string][] = [];
    const raw = req.rawHeaders;
    const dropped = connectionTokens(req.headers.connection);
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      if (!HOP_BY_HOP.has(name) && !dropped.has(name)) headers.push([raw[i]!, raw[i + 1]!]);
    }
    // A chunked body is re-framed, chunked, on our connection. Passed on bare (a GET is not chunked by
    // Node unless told), its bytes would read as a second request there, with a client address of its own.
    if (req.headers['transfer-encoding'] !== undefined) headers.push(['Transfer-Encoding', 'chunked']);
    headers.push([CLIENT_HEADER, req.socket.remoteAddress ?? '']);
    const out = request({ socketPath, agent, method: req.method, path: req.url, headers: headers.flat() });
    out.on('response', (up) => relay(up, res));
    out.on('error', (err) => {
      // The client left first (we destroyed the request): nobody to answer.
      if (res.destroyed) return;
      if (res.headersSent) res.destroy();
      else sendError(req, res, new PrimaryUnavailableError((err as NodeJS.ErrnoException).code ?? err.message, { cause: err }), logger);
    });
    // The client went away first: the owner stops too (a pull-through reader, an upload).
    res.once('close', () => {
      if (!res.writableFinished) out.destroy();
    });
    req.pipe(out);
  };
  return Object.assign(forward, { close: () => agent.destroy() });
}

/** Header names a Connection header lists: hop-by-hop for this connection only. */
function connectionTokens(value: string | undefined): Set<string> {
  return new Set((value ?? '').split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== ''));
}

function relay(up: IncomingMessage, res: ServerResponse): void {
  const headers: string[] = [];
  const raw = up.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) headers.push(raw[i]!, raw[i + 1]!);
  }
  res.writeHead(up.statusCode ?? 502, headers);
  up.on('data', (chunk: Buffer) => {
    // The file handler's access-log count (a no-op where express counts the writes itself).
    addBytes(res, chunk.length);
    if (!res.write(chunk)) up.pause();
  });
  res.on('drain', () => up.resume());
  up.once('end', () => res.end());
  // Cut on the owner's side: the client must not see a clean end of a short body.
  up.once('aborted', () => res.destroy());
  up.once('error', () => res.destroy());
}

/**
 * On the owner's socket: the request came from a worker, so the client is
 * the one the worker named (the API's log lines and the trusted-proxy check
 * see it, as they would without workers).
 */
export function adoptForwardedClient(req: IncomingMessage): void {
  const client = req.headers[CLIENT_HEADER];
  Object.defineProperty(req.socket, 'remoteAddress', { value: typeof client === 'string' && client !== '' ? client : undefined, configurable: true });
}
