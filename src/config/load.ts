import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { configSchema, isFolderUrl, parseListen, type ParsedConfig } from './schema.js';
import { parseFilterGroups, type FilterGroups } from '../simplestreams/filter.js';

export interface Listen {
  readonly host: string;
  readonly port: number;
}

export interface SourceConfig {
  readonly name: string;
  /** Mirror root, always ending in "/": http(s), or file:/// for a folder (an absolute path given becomes one). */
  readonly url: string;
  /** Absolute path, or undefined for an unverified source. */
  readonly keyring: string | undefined;
  readonly contentIds: readonly RegExp[] | undefined;
  readonly filterText: readonly (readonly string[])[];
  readonly filters: FilterGroups;
  readonly maxVersions: number;
  readonly verify: boolean;
  readonly onDemand: boolean;
}

export interface Config {
  /** The file it came from, or "(built-in)" */
  readonly file: string;
  readonly dataDir: string;
  readonly sources: readonly SourceConfig[];
  readonly publish: { readonly signingKey: string | undefined; readonly keepSnapshots: number; readonly keyName: string };
  readonly download: {
    readonly concurrency: number;
    readonly retries: number;
    readonly connectTimeout: number;
    readonly idleTimeout: number;
    readonly rateLimit: number;
    readonly partialProtection: number;
    readonly proxy: string | undefined;
    /** Connections one large file may use at once (Range requests); 1 = one stream per file. */
    readonly stripes: number;
    /** Bytes per Range request of a striped file. */
    readonly stripeSize: number;
  };
  readonly http: {
    readonly listen: readonly Listen[];
    readonly prefix: string;
    readonly publicUrl: string | undefined;
    /** ms; always set by loadConfig, optional for servers built by hand (the HTTP server's defaults apply). */
    readonly sendTimeout?: number;
    /** ms; as sendTimeout. */
    readonly requestTimeout?: number;
    readonly maxConnections?: number;
    readonly trustedProxies?: readonly string[];
    /** Processes serving HTTP under `maas-mirror serve`; set by loadConfig, 1 when absent. */
    readonly workers?: number;
  };
  readonly tftp: {
    readonly enabled: boolean;
    readonly listen: readonly Listen[];
    readonly maxBlksize: number;
    readonly maxWindowsize: number;
    readonly timeout: number;
    readonly retries: number;
    readonly maxTransfers: number;
    readonly maxTransfersPerClient: number;
    readonly firstAckTimeout: number;
    readonly firstAckResends: number;
    /** Threads that run transfers; 1: all in the main thread. */
    readonly workers: number;
  };
  readonly schedule: { readonly onStart: boolean; readonly interval: number; readonly jitter: number; readonly retry: number };
  readonly boot: { readonly forward: { readonly host: string; readonly port: number } | undefined; readonly files: string | undefined };
  readonly bootloaders: { readonly maxUnpackedBytes: number; readonly maxEntries: number; readonly unpackTimeout: number };
  readonly api: { readonly token: string | undefined };
  readonly images: { readonly contentId: string; readonly maxVersions: number; readonly maxUploadBytes: number };
}

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEFAULT_CONFIG_FILE = join(PROJECT_ROOT, 'config', 'maas-mirror.yaml');

/** Which file to read: --config, then MAAS_MIRROR_CONFIG, then the shipped default. */
export function configPath(cliValue?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(cliValue ?? env.MAAS_MIRROR_CONFIG ?? DEFAULT_CONFIG_FILE);
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the file: ${(err as Error).message}` }]);
  }
  let config: Config;
  try {
    config = parseConfig(text, file, env);
  } catch (err) {
    // Every problem at once: files the invalid document names are checked too, as far as they can be read.
    if (err instanceof ConfigError && err.file === file) {
      const files = missingFiles(namedFiles(text, dirname(resolve(file))));
      if (files.length > 0) throw new ConfigError(file, [...err.issues, ...files]);
    }
    throw err;
  }
  checkFiles(config);
  return config;
}

interface NamedFile {
  readonly path: string;
  readonly file: string;
  readonly kind: 'keyring' | 'signingKey';
}

/** The keyring and key paths a (possibly invalid) document names, resolved like normalize() does. */
function namedFiles(text: string, base: string): NamedFile[] {
  const doc = parseDocument(text, { uniqueKeys: false });
  if (doc.errors.length > 0) return [];
  const raw = doc.toJS() as { sources?: unknown; publish?: { signingKey?: unknown } } | null;
  const rel = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const out: NamedFile[] = [];
  if (Array.isArray(raw?.sources)) {
    raw.sources.forEach((s: unknown, i) => {
      const k = (s as { keyring?: unknown } | null)?.keyring;
      if (typeof k === 'string' && k !== '') out.push({ path: `sources[${i}].keyring`, file: rel(k), kind: 'keyring' });
    });
  }
  const key = raw?.publish?.signingKey;
  if (typeof key === 'string' && key !== '') out.push({ path: 'publish.signingKey', file: rel(key), kind: 'signingKey' });
  return out;
}

function missingFiles(files: readonly NamedFile[]): ConfigIssue[] {
  return files
    .filter((f) => !existsSync(f.file))
    .map((f) => ({
      path: f.path,
      message:
        f.kind === 'keyring'
          ? `${f.file} does not exist; give the upstream's public keyring (binary .gpg or armored .asc)`
          : `${f.file} does not exist; give an armored private key, or remove the key to have one generated`,
    }));
}

export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: '', message: `YAML syntax: ${e.message.split('\n')[0]}` })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(file, result.error.issues.map(toIssue));
  const base = dirname(resolve(file));
  return deepFreeze(normalize(result.data, base, file, env));
}

/**
 * The files a configuration names must exist on this host. Checked when a
 * file is loaded to run with, not when text is only parsed (a config written
 * for a container names paths of the container).
 */
export function checkFiles(config: Config): void {
  const named: NamedFile[] = [];
  config.sources.forEach((s, i) => {
    if (s.keyring !== undefined) named.push({ path: `sources[${i}].keyring`, file: s.keyring, kind: 'keyring' });
  });
  if (config.publish.signingKey !== undefined) named.push({ path: 'publish.signingKey', file: config.publish.signingKey, kind: 'signingKey' });
  const missing = missingFiles(named);
  if (missing.length > 0) throw new ConfigError(config.file, missing);
}

function toIssue(issue: z.core.$ZodIssue): ConfigIssue {
  const path = issue.path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}; check the spelling against the README`;
  } else if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) {
    message = `required (${issue.expected})`;
  }
  return { path, message };
}

function normalize(c: ParsedConfig, base: string, file: string, env: NodeJS.ProcessEnv): Config {
  const rel = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const listens = (v: string | string[]) => (Array.isArray(v) ? v : [v]).map((l) => parseListen(l)!);
  return {
    file,
    dataDir: rel(c.dataDir),
    sources: c.sources.map((s) => ({
      name: s.name,
      url: sourceRoot(s.url),
      keyring: s.keyring === undefined ? undefined : rel(s.keyring),
      contentIds: s.contentIds?.map((r) => new RegExp(r)),
      filterText: s.filters,
      filters: parseFilterGroups(s.filters),
      maxVersions: s.maxVersions,
      verify: s.verify,
      onDemand: s.onDemand,
    })),
    publish: {
      signingKey: c.publish.signingKey === undefined ? undefined : rel(c.publish.signingKey),
      keepSnapshots: c.publish.keepSnapshots,
      keyName: c.publish.keyName,
    },
    download: { ...c.download, proxy: c.download.proxy },
    http: {
      listen: listens(c.http.listen),
      prefix: c.http.prefix,
      publicUrl: c.http.publicUrl,
      sendTimeout: c.http.sendTimeout,
      requestTimeout: c.http.requestTimeout,
      maxConnections: c.http.maxConnections,
      trustedProxies: c.http.trustedProxies,
      workers: c.http.workers,
    },
    tftp: { ...c.tftp, listen: listens(c.tftp.listen) },
    boot: { forward: c.boot.forward, files: c.boot.files === undefined ? undefined : rel(c.boot.files) },
    bootloaders: { ...c.bootloaders },
    schedule: { ...c.schedule },
    api: { token: env.MAAS_MIRROR_API_TOKEN || c.api.token },
    images: { ...c.images },
  };
}

function sourceRoot(url: string): string {
  const withSlash = url.endsWith('/') ? url : `${url}/`;
  // One spelling for a folder, whatever was written: a file:/// URL, percent-encoded.
  return isFolderUrl(url) ? pathToFileURL(withSlash.startsWith('/') ? withSlash : fileURLToPath(withSlash)).href.replace(/\/?$/, '/') : withSlash;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value) && !(value instanceof RegExp)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
