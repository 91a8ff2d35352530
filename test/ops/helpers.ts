import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express, { type Express } from 'express';
import { createLogger, type Logger } from '../../src/log.js';
import { createOps, type Ops, type OpsOptions } from '../../src/ops/index.js';

/** A real pino logger writing JSON lines into memory, for reading what was logged. */
export function captureLogger(level = 'debug'): { logger: Logger; text: () => string; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const logger = createLogger({ level, destination: sink });
  const text = () => chunks.join('');
  return {
    logger,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** The ops routes on an express app, with a 404 behind them like the file handler's. */
export function opsApp(ops: Ops): Express {
  const app = express();
  ops.routes(app);
  app.use((_req, res) => {
    res.status(404).json({ code: 'MM_NOT_FOUND', message: 'not here' });
  });
  return app;
}

export function makeOps(options: Partial<OpsOptions> & Pick<OpsOptions, 'config'>): Ops {
  return createOps({
    logger: captureLogger().logger,
    defaultMetrics: false,
    syncOptions: { retryBaseMs: 5 },
    ...options,
  });
}

/** Listens on 127.0.0.1, any free port. */
export async function listen(app: Express): Promise<{ server: Server; url: string; port: number; close: () => Promise<void> }> {
  const server = createServer(app);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A port nothing listens on right now, for a child process to take. */
export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Polls until fn returns a truthy value, or throws after timeoutMs. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Value of one sample of the exposition text, or undefined when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v) && Object.keys(got).length === Object.keys(labels).length) return Number(m[3]);
  }
  return undefined;
}

/**
 * Lets the first `pass` item downloads of the upstream through and holds the
 * others until open() is called: a sync then stays in its download phase,
 * with some progress, for as long as a test needs. Use a long idleTimeout.
 */
export function gateItems(server: { intercept: unknown }, pass: number): { open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let items = 0;
  server.intercept = async (_req: unknown, _res: unknown, path: string) => {
    if (!path.startsWith('streams/') && ++items > pass) await gate;
    return false;
  };
  return { open };
}

/** download settings for a gated upstream: held requests must not time out. */
export const PATIENT_DOWNLOAD = { download: { concurrency: 4, retries: 3, connectTimeout: '2s', idleTimeout: '60s' } };
