import { availableParallelism, hostname } from 'node:os';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { parseFilter } from '../simplestreams/filter.js';

/** tftp.workers defaults to the number of cores, up to this: beyond it the listening thread is the limit. */
export const DEFAULT_TFTP_WORKERS_CAP = 8;
/** Each worker is a thread with its own heap: an explicit budget. */
export const MAX_TFTP_WORKERS = 64;

export function defaultTftpWorkers(): number {
  return Math.max(1, Math.min(DEFAULT_TFTP_WORKERS_CAP, availableParallelism()));
}

const duration = (fallback: string) =>
  z
    .union([z.string(), z.number()])
    .default(fallback)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a duration; write e.g. "30s", "10m", "6h"` });
        return z.NEVER;
      }
      return ms;
    });

const regex = z.string().superRefine((v, ctx) => {
  try {
    new RegExp(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `bad regular expression: ${(err as Error).message}` });
  }
});

const filterExpr = z.string().superRefine((v, ctx) => {
  try {
    parseFilter(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/** host:port, [v6]:port or a bare port. */
const listen = z.string().superRefine((v, ctx) => {
  if (parseListen(v) === undefined) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not host:port (e.g. "0.0.0.0:8080", "[::]:8080")` });
  }
});

export function parseListen(v: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v) ?? /^()()(\d{1,5})$/.exec(v);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] || m[2] || '0.0.0.0', port };
}

/**
 * http.workers by default: one per core up to this many. Past that, requests are bound by the
 * disk and the network, and every worker holds its own caches.
 */
export const HTTP_WORKERS_DEFAULT_CAP = 8;
/** The most http.workers may ask for. */
export const HTTP_WORKERS_MAX = 64;
const defaultHttpWorkers = (): number => Math.max(1, Math.min(HTTP_WORKERS_DEFAULT_CAP, availableParallelism()));

const SOURCE_URL_MESSAGE = 'must be an http:// or https:// URL of the mirror root, a file:///absolute/path/ URL or an absolute path';

/** A mirror root: http(s) URL, or a folder (file:///abs/path/ or /abs/path) holding a simplestreams tree. */
const sourceUrl = z.string().superRefine((v, ctx) => {
  if (v.startsWith('/')) return;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: SOURCE_URL_MESSAGE });
    return;
  }
  const folder = u.protocol === 'file:' && (u.host === '' || u.host === 'localhost') && u.pathname.startsWith('/');
  if (!folder && !/^https?:$/.test(u.protocol)) ctx.addIssue({ code: 'custom', message: SOURCE_URL_MESSAGE });
});

export function isFolderUrl(v: string): boolean {
  return v.startsWith('/') || v.startsWith('file:');
}

/** A TFTP server to relay to: host, host:port or [v6]:port; port 69 when left out. */
const forwardTarget = z.string().transform((v, ctx) => {
  const target = parseForward(v);
  if (!target) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a TFTP server address (e.g. "10.0.0.2" or "10.0.0.2:69")` });
    return z.NEVER;
  }
  return target;
});

export function parseForward(v: string): { host: string; port: number } | undefined {
  const bare = /^\[([0-9a-fA-F:.]+)\]$/.exec(v)?.[1] ?? (/^[0-9a-fA-F:.]*:[0-9a-fA-F:.]*$/.test(v) && v.includes('::') ? v : undefined);
  if (bare !== undefined) return { host: bare, port: 69 };
  if (/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(v) && !/^\d+$/.test(v)) return { host: v, port: 69 };
  const l = parseListen(v);
  if (!l || l.port === 0 || !/^[^:]*:\d+$|^\[/.test(v)) return undefined;
  return l;
}

const source = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'use letters, digits, ".", "_" or "-"'),
    url: sourceUrl,
    keyring: z.string().min(1).optional(),
    contentIds: z.array(regex).optional(),
    filters: z.array(z.array(filterExpr)).default([]),
    maxVersions: z.number().int().min(1).default(1),
    verify: z.boolean().default(true),
    onDemand: z.boolean().default(false),
  })
  .superRefine((s, ctx) => {
    if (s.verify && !s.keyring) {
      ctx.addIssue({ code: 'custom', path: ['keyring'], message: 'a keyring is required when verify is true' });
    }
    if (s.onDemand && isFolderUrl(s.url)) {
      ctx.addIssue({ code: 'custom', path: ['onDemand'], message: 'a folder source cannot be on demand: nothing could fetch its files later; sync them' });
    }
  });

export const configSchema = z
  .strictObject({
    dataDir: z.string().min(1),
    sources: z.array(source).min(1, 'list at least one source'),
    publish: z
      .strictObject({
        signingKey: z.string().min(1).optional(),
        /** The user id of a generated signing key, so the keys of tiered mirrors can be told apart. */
        keyName: z
          .string()
          .min(1)
          .max(200)
          .regex(/^[^\n\r<>]+$/, 'one line, without < or >')
          .default(() => `maas-mirror on ${hostname()}`),
        keepSnapshots: z.number().int().min(1).default(3),
      })
      .prefault({}),
    download: z
      .strictObject({
        concurrency: z.number().int().min(1).max(64).default(6),
        retries: z.number().int().min(0).max(100).default(5),
        connectTimeout: duration('30s'),
        idleTimeout: duration('60s'),
        rateLimit: z.number().int().min(0).default(0),
        /** Partial files younger than this are kept by gc, so a running or crashed sync can resume them. */
        partialProtection: duration('24h'),
        /** HTTP proxy for upstream requests; HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply when unset. */
        proxy: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// proxy URL, e.g. "http://proxy.example:3128"' }).optional(),
        /** One flow on a long path cannot fill a site's link: a large file is fetched in parts over this many connections. */
        stripes: z.number().int().min(1).max(16).default(6),
        /** Bytes per Range request when striping; files smaller than two of these ride one connection. */
        stripeSize: z.number().int().min(65_536).max(1 << 30).default(8 << 20),
      })
      .prefault({}),
    http: z
      .strictObject({
        listen: z.union([listen, z.array(listen).min(1)]).default('0.0.0.0:8080'),
        prefix: z
          .string()
          .regex(/^\/(?:[^/]+\/)*$/, 'must start and end with "/"')
          .default('/maas/images/ephemeral-v3/stable/'),
        /** Public base URL used in the status page's MAAS commands, when behind a proxy. */
        publicUrl: z.url().optional(),
        /** A response whose socket takes no byte for this long is destroyed (a client that stopped reading). */
        sendTimeout: duration('60s').pipe(z.number().min(1000, 'must be at least 1s')),
        /**
         * A whole request (headers and body) must arrive within this (slow senders). Streamed
         * uploads (POST /api/v1/images) are exempt: they live while a byte comes every sendTimeout.
         */
        requestTimeout: duration('60s').pipe(z.number().min(1000, 'must be at least 1s')),
        /** Open connections at once; more are closed as they arrive. */
        maxConnections: z.number().int().min(1).default(1024),
        /**
         * Proxies (besides loopback) whose X-Maas-Mirror-Accel header is honoured: nginx in front
         * (`maas-mirror nginx-config`) then sends held files itself.
         */
        trustedProxies: z.array(z.union([z.ipv4(), z.ipv6()])).default([]),
        /** Processes serving HTTP; 1 is one process doing everything (no cluster). */
        workers: z.number().int().min(1).max(HTTP_WORKERS_MAX).default(defaultHttpWorkers),
      })
      .prefault({}),
    tftp: z
      .strictObject({
        enabled: z.boolean().default(true),
        listen: z.union([listen, z.array(listen).min(1)]).default('0.0.0.0:69'),
        maxBlksize: z.number().int().min(8).max(65464).default(8192),
        maxWindowsize: z.number().int().min(1).max(65535).default(64),
        /** Retransmission timeout; a client's RFC 2349 `timeout` (1-255 s) overrides it. */
        timeout: duration('1s').pipe(
          z
            .number()
            .min(100, 'must be at least 100ms; a shorter timeout resends before replies can arrive')
            .max(255_000, 'must be at most 255s, the largest timeout RFC 2349 allows'),
        ),
        retries: z.number().int().min(1).max(50).default(5),
        maxTransfers: z.number().int().min(1).default(500),
        maxTransfersPerClient: z.number().int().min(1).default(16),
        /** A transfer whose client has acknowledged nothing gives its slot up after this, whatever timeout it asked for. */
        firstAckTimeout: duration('3s').pipe(z.number().min(100, 'must be at least 100ms').max(60_000, 'must be at most 60s')),
        /** Resends before the first ACK: an unanswered request draws 1 + this many packets. */
        firstAckResends: z.number().int().min(0).max(10).default(2),
        /** Threads that run transfers (the main one only takes requests); 1: all in the main thread. */
        workers: z.number().int().min(1).max(MAX_TFTP_WORKERS).default(defaultTftpWorkers),
      })
      .prefault({}),
    boot: z
      .strictObject({
        /** A TFTP server (a MAAS rack) asked for the per-machine configs maas-mirror does not have. */
        forward: forwardTarget.optional(),
        /** A folder served over TFTP and HTTP at its relative paths; NAME.tmpl is rendered as NAME. */
        files: z.string().min(1).optional(),
      })
      .prefault({}),
    bootloaders: z
      .strictObject({
        /** Budgets per bootloader archive (a signed archive can still be a decompression bomb). */
        maxUnpackedBytes: z.number().int().min(1024 * 1024).default(256 * 1024 * 1024),
        maxEntries: z.number().int().min(1).default(10_000),
        unpackTimeout: duration('60s').pipe(z.number().min(1, 'must be at least 1ms')),
      })
      .prefault({}),
    schedule: z
      .strictObject({
        onStart: z.boolean().default(true),
        interval: duration('6h'),
        jitter: duration('10m'),
        /** After a failed sync: first retry delay, doubling up to interval; 0 turns retries off. */
        retry: duration('5m'),
      })
      .prefault({}),
    /** Site-built images published beside the mirrored streams (maas-mirror images). */
    images: z
      .strictObject({
        contentId: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9:._-]*$/, 'use letters, digits, ":", ".", "_" or "-"')
          .default('local:custom-images'),
        maxVersions: z.number().int().min(1).default(2),
        /** Largest image POST /api/v1/images accepts, in bytes. */
        maxUploadBytes: z.number().int().min(1).default(64 * 1024 ** 3),
      })
      .prefault({}),
    api: z
      .strictObject({
        token: z.string().min(16, 'use a token of at least 16 characters').optional(),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    const names = new Set<string>();
    c.sources.forEach((s, i) => {
      if (names.has(s.name)) {
        ctx.addIssue({ code: 'custom', path: ['sources', i, 'name'], message: `duplicate source name "${s.name}"` });
      }
      names.add(s.name);
    });
  });

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
