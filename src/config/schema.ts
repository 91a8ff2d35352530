import { z } from 'zod';
import { parseDuration } from './duration.js';
import { parseFilter } from '../simplestreams/filter.js';

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

const source = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'use letters, digits, ".", "_" or "-"'),
    url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL of the mirror root' }),
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
  });

export const configSchema = z
  .strictObject({
    dataDir: z.string().min(1),
    sources: z.array(source).min(1, 'list at least one source'),
    publish: z
      .strictObject({
        signingKey: z.string().min(1).optional(),
        keepSnapshots: z.number().int().min(1).default(3),
      })
      .prefault({}),
    download: z
      .strictObject({
        concurrency: z.number().int().min(1).max(64).default(4),
        retries: z.number().int().min(0).max(100).default(5),
        connectTimeout: duration('30s'),
        idleTimeout: duration('60s'),
        rateLimit: z.number().int().min(0).default(0),
        /** Partial files younger than this are kept by gc, so a running or crashed sync can resume them. */
        partialProtection: duration('24h'),
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
      })
      .prefault({}),
    schedule: z
      .strictObject({
        onStart: z.boolean().default(true),
        interval: duration('6h'),
        jitter: duration('10m'),
      })
      .prefault({}),
    boot: z
      .strictObject({
        /** A folder served over TFTP and HTTP at its relative paths; NAME.tmpl is rendered as NAME. */
        files: z.string().min(1).optional(),
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
