import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmod, unlink } from 'node:fs/promises';
import type { Listen } from '../config/load.js';
import { createHttpApp, ROUTES_PREFIX, type HttpApp, type HttpAppOptions } from './app.js';
import { ListenError, TooManyConnectionsError } from '../errors.js';
import { adoptForwardedClient } from './forward.js';

export interface HttpServerOptions extends HttpAppOptions {
  /** Overrides config.http.listen (tests listen on port 0). */
  readonly listen?: readonly Listen[];
  /**
   * Paths that go through express (and its `routes`), besides /api: an
   * entry matches itself and everything below it; "/" matches only itself.
   */
  readonly routedPaths?: readonly string[];
  /** Sees every request first (metrics), whichever side then answers it. */
  readonly observe?: (req: IncomingMessage, res: ServerResponse) => void;
  /**
   * Requests whose body may take longer than http.requestTimeout (a streamed
   * upload of tens of GB): they are bounded by progress instead, cut only
   * when no byte comes for http.sendTimeout.
   */
  readonly streamedBody?: (req: IncomingMessage) => boolean;
  /**
   * Listen on this unix socket only (mode 0600), instead of the addresses: the
   * owner's side of http.workers, reached by the workers (forward.ts).
   */
  readonly socketPath?: string;
}

/** Whether a request goes to express rather than straight to the file handler. */
export function isRouted(url: string, routed: readonly string[]): boolean {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  return routed.some((p) => path === p || (p !== '/' && path.startsWith(`${p}/`)));
}

/** The defaults of http.sendTimeout, http.requestTimeout and http.maxConnections (src/config/schema.ts). */
export const DEFAULT_SEND_TIMEOUT_MS = 60_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_CONNECTIONS = 1024;

/**
 * The bounds every connection lives under. Headers must arrive within 15 s
 * and a whole request within requestTimeout (slowloris, boundRequest); an
 * idle keep-alive connection ends after 5 s. A socket that takes or gives no
 * byte for sendTimeout is destroyed: for a streamed upload that is its only
 * bound while it is received. A response whose socket takes no byte for sendTimeout is
 * destroyed: a client that stopped reading then costs its kernel socket
 * buffer and at most two 32 KiB chunks (send.ts), and only that long. Past
 * maxConnections, node closes new connections as they arrive.
 */
function applyBounds(server: Server, http: HttpServerOptions['config']['http'], logger: HttpServerOptions['logger']): void {
  const sendTimeout = http.sendTimeout ?? DEFAULT_SEND_TIMEOUT_MS;
  const maxConnections = http.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  server.setTimeout(sendTimeout, (socket) => {
    // No byte went out (or came in) for sendTimeout: the client is not reading.
    socket.destroy();
  });
  server.maxConnections = maxConnections;
  let warned = 0;
  server.on('drop', () => {
    // One line a minute at most: a flood of refused connections must not flood the log too.
    if (Date.now() - warned < 60_000) return;
    warned = Date.now();
    const err = new TooManyConnectionsError(maxConnections);
    logger.warn({ component: 'http', code: err.code }, err.message);
  });
}

/**
 * A request whose body has not fully arrived within `ms` of its headers
 * (a slow sender) has its connection destroyed, as node's requestTimeout
 * would, even when it was answered early (node then reads the rest of the
 * body anyway); a response still being sent is sendTimeout's business.
 */
function boundRequest(req: IncomingMessage, ms: number): void {
  const socket = req.socket;
  const done = () => {
    clearTimeout(timer);
    req.off('end', done);
    socket.off('close', done);
  };
  const timer = setTimeout(() => {
    done();
    if (!req.complete) socket.destroy();
  }, ms);
  timer.unref();
  req.once('end', done);
  socket.once('close', done);
}

export interface HttpServerHandle {
  readonly app: HttpApp;
  readonly servers: readonly Server[];
  /** What each server is bound to (the real port when 0 was asked). */
  readonly addresses: readonly Listen[];
  /** ms a whole request (headers and body) may take; streamed uploads are bounded by progress instead. */
  readonly requestTimeout: number;
  /** Same as app.invalidate(): call after each publish. */
  invalidate(): void;
  /**
   * Stops accepting, lets running downloads finish for up to graceMs, then
   * cuts what is left.
   */
  close(graceMs?: number): Promise<void>;
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const app = createHttpApp(options);
  const listens = options.socketPath === undefined ? (options.listen ?? options.config.http.listen) : [];
  const servers: Server[] = [];
  const addresses: Listen[] = [];
  const routed = [ROUTES_PREFIX, ...(options.routedPaths ?? [])];
  const requestTimeout = options.config.http.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const forwarded = options.socketPath !== undefined;
  const newServer = () => {
    // node's own requestTimeout is per server; ours skips streamed uploads (boundRequest).
    const server = createServer({ keepAliveTimeout: 5_000, headersTimeout: 15_000, requestTimeout: 0, connectionsCheckingInterval: 5_000 }, (req, res) => {
      if (forwarded) adoptForwardedClient(req);
      options.observe?.(req, res);
      if (!options.streamedBody?.(req)) boundRequest(req, requestTimeout);
      if (isRouted(req.url ?? '', routed)) app(req, res);
      else app.serveFile(req, res);
    });
    applyBounds(server, options.config.http, options.logger);
    return server;
  };
  if (options.socketPath !== undefined) servers.push(await listenOnSocket(newServer(), options.socketPath));
  try {
    for (const l of listens) {
      const server = newServer();
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) =>
          reject(new ListenError(formatListen(l), err.code ?? err.message, { cause: err }));
        server.once('error', onError);
        // "::" is dual-stack by default and would take the IPv4 port too: with an IPv4 entry on the same port, keep it to IPv6.
        const ipv6Only = l.host.includes(':') && listens.some((o) => o !== l && !o.host.includes(':') && o.port === l.port);
        server.listen({ host: l.host, port: l.port, ipv6Only }, () => {
          server.off('error', onError);
          resolve();
        });
      });
      servers.push(server);
      const a = server.address() as AddressInfo;
      addresses.push({ host: a.address, port: a.port });
      options.logger.info({ component: 'http', listen: formatListen({ host: a.address, port: a.port }) }, 'HTTP server listening');
    }
  } catch (err) {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    throw err;
  }

  return {
    app,
    servers,
    addresses,
    requestTimeout: options.config.http.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS,
    invalidate: () => app.invalidate(),
    close: async (graceMs = 5_000) => {
      const closed = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const s of servers) s.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of servers) s.closeAllConnections();
      }, graceMs);
      timer.unref();
      await Promise.all(closed);
      clearTimeout(timer);
    },
  };
}

/** Only this user may connect: requests here are taken as the workers', with the client address they name. */
async function listenOnSocket(server: Server, path: string): Promise<Server> {
  await unlink(path).catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new ListenError(path, err.code ?? err.message, { cause: err }));
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
  await chmod(path, 0o600);
  return server;
}

export function formatListen(l: Listen): string {
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}
