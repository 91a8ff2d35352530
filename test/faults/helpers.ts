import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, sep } from 'node:path';
import type { IndexDocument, ProductsDocument } from '../../src/simplestreams/types.js';
import { newestVersions } from '../../src/simplestreams/versions.js';
import type { UpstreamFixture } from '../../src/demo-upstream/upstream.js';

export const BIN = join(import.meta.dirname, '../../bin/maas-mirror.js');
const SNAPSHOT_ID_RE = /^\d{8}T\d{9}Z-[0-9a-f]{6}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;


export async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * sha256 of a file, re-hashed only when its inode changed: any write to a
 * file moves its ctime (which no one can set back), so an inode seen with
 * the same size, mtime and ctime holds the bytes hashed before. Checks that
 * run after every one of many kills stay fast without trusting any name.
 */
const hashed = new Map<string, { key: string; sha256: string }>();
export async function sha256Cached(file: string): Promise<string> {
  const st = await stat(file, { bigint: true });
  const id = `${st.dev}:${st.ino}`;
  const key = `${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const known = hashed.get(id);
  if (known?.key === key) return known.sha256;
  const sha256 = await sha256Of(file);
  hashed.set(id, { key, sha256 });
  return sha256;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export async function walkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walkFiles(p)));
    else out.push(p);
  }
  return out;
}

/**
 * Every file under blobs/ must be blobs/sha256/<2 hex>/<its own sha256>.
 * Returns the problems found (empty when the store is sound) and the blobs.
 */
export async function storeProblems(dataDir: string): Promise<{ problems: string[]; blobs: Map<string, number> }> {
  const problems: string[] = [];
  const blobs = new Map<string, number>();
  const root = join(dataDir, 'blobs');
  await mapLimit(await walkFiles(root), 4, async (file) => {
    const rel = relative(root, file).split(sep);
    const name = rel.at(-1)!;
    if (rel.length !== 3 || rel[0] !== 'sha256' || !SHA256_RE.test(name) || rel[1] !== name.slice(0, 2)) {
      problems.push(`stray file in the store: ${relative(dataDir, file)}`);
      return;
    }
    const actual = await sha256Cached(file);
    if (actual !== name) problems.push(`blob ${name} hashes to ${actual}`);
    blobs.set(name, (await stat(file)).size);
  });
  return { problems: problems.sort(), blobs };
}

export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') {
        reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? Number((err as { code: number }).code) : 0, stdout, stderr });
    });
  });
}

/** The CLI as an operator runs it, from the TypeScript sources. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, MAAS_MIRROR_FROM_SOURCE: '1', LOG_LEVEL: 'warn', ...extra };
}

export function cli(args: string[], env: NodeJS.ProcessEnv = cliEnv(), timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') {
        reject(new Error(`maas-mirror ${args.join(' ')}: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? Number((err as { code: number }).code) : 0, stdout, stderr });
    });
  });
}

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = cliEnv()): ChildProcess & { output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return Object.assign(child, { output: () => out, exited });
}

/** sha256 → size of every blob, by name only (no hashing). */
export async function blobNames(dataDir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const file of await walkFiles(join(dataDir, 'blobs', 'sha256'))) out.set(basename(file), (await stat(file)).size);
  return out;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** gpgv with a throwaway home, so nothing outside the test directory is read or written. */
export class Gpgv {
  private constructor(
    private readonly home: string,
    readonly keyring: string,
  ) {}

  static async create(keyring: string): Promise<Gpgv> {
    const home = await mkdtemp(join(tmpdir(), 'mm-gpgv-'));
    return new Gpgv(home, keyring);
  }

  /** The clear-signed text, once gpgv says the signature is good. */
  async clearsigned(file: string): Promise<string> {
    const out = join(this.home, `out-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const r = await run('gpgv', ['--homedir', this.home, '--keyring', this.keyring, '--output', out, file]);
    if (r.code !== 0) throw new Error(`gpgv refuses ${file}: ${r.stderr}`);
    // gpgv writes the signed text in its canonical form, with CRLF line ends.
    const text = (await readFile(out, 'utf8')).replace(/\r\n/g, '\n');
    await rm(out, { force: true });
    return text;
  }

  async detached(sig: string, data: string): Promise<void> {
    const r = await run('gpgv', ['--homedir', this.home, '--keyring', this.keyring, sig, data]);
    if (r.code !== 0) throw new Error(`gpgv refuses ${sig} over ${data}: ${r.stderr}`);
  }

  async close(): Promise<void> {
    await rm(this.home, { recursive: true, force: true });
  }
}

export interface TreeCheck {
  readonly id: string;
  readonly root: string;
  /** item path → sha256 */
  readonly items: Map<string, string>;
  readonly products: Map<string, ProductsDocument>;
}

/**
 * What a MAAS region would check, and more: `current` resolves to a finished
 * snapshot (never a .building- one), every document parses, each .sjson and
 * .json.gpg verifies with gpgv against the mirror's exported key and says
 * the same as the .json, and every listed item is there with its size and
 * sha256. Throws with the first problem; undefined when there is no current.
 */
export async function checkCurrent(dataDir: string, gpgv: Gpgv): Promise<TreeCheck | undefined> {
  let root: string;
  try {
    root = await realpath(join(dataDir, 'current'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const id = basename(root);
  if (dirname(root) !== (await realpath(join(dataDir, 'snapshots'))) || !SNAPSHOT_ID_RE.test(id)) {
    throw new Error(`current points at ${root}, not a finished snapshot`);
  }
  JSON.parse(await readFile(join(dataDir, 'manifests', `${id}.json`), 'utf8'));
  const docText = async (base: string, sameText: boolean): Promise<{ json: string; signed: string }> => {
    const json = await readFile(join(root, `${base}.json`), 'utf8');
    const signed = await gpgv.clearsigned(join(root, `${base}.sjson`));
    if (sameText && signed.trimEnd() !== json.trimEnd()) throw new Error(`${base}.sjson does not say what ${base}.json says`);
    await gpgv.detached(join(root, `${base}.json.gpg`), join(root, `${base}.json`));
    return { json, signed };
  };
  const indexTexts = await docText('streams/v1/index', false);
  const index = JSON.parse(indexTexts.json) as IndexDocument;
  // The signed index lists the .sjson files, the plain one the .json files; otherwise they agree.
  const signedIndex = JSON.parse(indexTexts.signed) as IndexDocument;
  for (const e of Object.values(signedIndex.index)) e.path = e.path.replace(/\.sjson$/, '.json');
  if (JSON.stringify(signedIndex) !== JSON.stringify(index)) throw new Error('index.sjson and index.json disagree');
  const products = new Map<string, ProductsDocument>();
  const listed = new Map<string, { sha256: string; size: number }>();
  const entries = Object.entries(index.index);
  const docs = await Promise.all(entries.map(async ([, entry]) => JSON.parse((await docText(entry.path.replace(/\.json$/, ''), true)).json) as ProductsDocument));
  entries.forEach(([cid, entry], i) => {
    const doc = docs[i]!;
    if (doc.content_id !== cid) throw new Error(`${entry.path} is ${doc.content_id}, the index says ${cid}`);
    products.set(cid, doc);
    for (const p of Object.values(doc.products)) {
      for (const v of Object.values(p.versions)) for (const item of Object.values(v.items)) listed.set(item.path, item);
    }
  });
  const items = new Map<string, string>();
  await mapLimit([...listed], 4, async ([path, item]) => {
    const file = join(root, path);
    const st = await stat(file).catch(() => undefined);
    if (!st) throw new Error(`${path} is listed by snapshot ${id} but missing`);
    if (st.size !== item.size) throw new Error(`${path}: ${st.size} bytes, listed as ${item.size}`);
    const actual = await sha256Cached(file);
    if (actual !== item.sha256) throw new Error(`${path} hashes to ${actual}, listed as ${item.sha256}`);
    items.set(path, item.sha256);
  });
  return { id, root, items, products };
}

/** product id → versions, as a tree lists them */
export function versionsIn(products: Iterable<ProductsDocument>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const doc of products) for (const [pid, p] of Object.entries(doc.products)) out[pid] = Object.keys(p.versions).sort();
  return out;
}

/** What a sync with maxVersions 1 and no filters selects from the fixture: item path → {sha256, size}. */
export function selectedFiles(upstream: UpstreamFixture, maxVersions = 1): Map<string, { sha256: string; size: number }> {
  const out = new Map<string, { sha256: string; size: number }>();
  for (const doc of upstream.products.values()) {
    for (const p of Object.values(doc.products)) {
      for (const v of newestVersions(Object.keys(p.versions), maxVersions)) {
        for (const i of Object.values(p.versions[v]!.items)) out.set(i.path, { sha256: i.sha256, size: i.size });
      }
    }
  }
  return out;
}

/** The newest versions the fixture offers, per product. */
export function newestIn(upstream: UpstreamFixture, maxVersions = 1): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const doc of upstream.products.values()) {
    for (const [pid, p] of Object.entries(doc.products)) out[pid] = newestVersions(Object.keys(p.versions), maxVersions).sort();
  }
  return out;
}

export async function writeJsonConfig(file: string, doc: unknown): Promise<string> {
  await writeFile(file, JSON.stringify(doc, null, 1));
  return file;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}
