import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { readCurrent, versionsOf } from '../helpers/tree.js';

/** Large files fetched in Range parts over several connections (download.stripes / download.stripeSize). */

const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const NOBLE = [['os=ubuntu', 'arch=amd64', 'release=noble']];
const PART = 65_536;
/** A squashfs of 1 MiB + 1000 bytes: 17 parts, the last one short. */
const BIG = (1 << 20) + 1000;

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

async function stripedEnv(): Promise<Env> {
  return makeEnv({ sizeOf: (ftype) => (ftype === 'squashfs' ? BIG : 16 * 1024) });
}

function stripedConfig(e: Env, download: Record<string, unknown> = {}) {
  return e.config([{ filters: NOBLE, maxVersions: 1 }], {
    download: { concurrency: 4, retries: 3, connectTimeout: '2s', idleTimeout: '2s', stripes: 4, stripeSize: PART, ...download },
  });
}

function newestSquashfs(e: Env) {
  const versions = e.upstream.product(NOBLE_AMD64).doc.products[NOBLE_AMD64]!.versions;
  return versions[Object.keys(versions).sort().at(-1)!]!.items.squashfs!;
}

function rangeOf(r: { range?: string }): [number, number] | undefined {
  const m = /^bytes=(\d+)-(\d*)$/.exec(r.range ?? '');
  return m ? [Number(m[1]), m[2] ? Number(m[2]) : Infinity] : undefined;
}

async function partialLeft(e: Env): Promise<string[]> {
  return readdir(join(e.dataDir, 'partial')).catch(() => []);
}

async function storedBytes(e: Env, sha256: string): Promise<Buffer> {
  const files = await readdir(join(e.dataDir, 'blobs'), { recursive: true });
  const name = files.find((f) => String(f).endsWith(sha256));
  if (!name) throw new Error(`blob ${sha256} not in the store`);
  return readFile(join(e.dataDir, 'blobs', String(name)));
}

/** Answers a part of `path` with its bytes from the upstream tree, passed through `edit`. */
async function answerPart(e: Env, res: ServerResponse, path: string, start: number, end: number, edit: (b: Buffer) => Buffer = (b) => b): Promise<Buffer> {
  const all = await readFile(join(e.upstream.dir, path));
  const body = edit(Buffer.from(all.subarray(start, end + 1)));
  res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${all.length}`, 'Content-Length': String(body.length) });
  return body;
}

describe('striped downloads', () => {
  it('fetches a large file in Range parts over several connections into one verified blob', async () => {
    env = await stripedEnv();
    const item = newestSquashfs(env);
    expect(item.size).toBe(BIG);
    const r = await env.sync({ config: stripedConfig(env) });
    expect(r.failures).toEqual([]);
    const reqs = env.server.requests(item.path);
    const ranges = reqs.map(rangeOf).sort((a, b) => a![0] - b![0]);
    expect(reqs.every((q) => q.status === 206)).toBe(true);
    // Contiguous parts of at most stripeSize (smaller near the end) covering the whole file, each asked once.
    expect(ranges[0]).toEqual([0, PART - 1]);
    ranges.forEach((rg, i) => {
      expect(rg![0]).toBe(i === 0 ? 0 : ranges[i - 1]![1] + 1);
      expect(rg![1] - rg![0] + 1).toBeLessThanOrEqual(PART);
    });
    expect(ranges.at(-1)![1]).toBe(BIG - 1);
    const stored = await storedBytes(env, item.sha256);
    expect(createHash('sha256').update(stored).digest('hex')).toBe(item.sha256);
    expect(await partialLeft(env)).toEqual([]);
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toBeDefined();
  });

  it('falls back to one stream when the server answers the first part with the whole file (no Range support)', async () => {
    env = await stripedEnv();
    env.server.ignoreRange = true;
    const item = newestSquashfs(env);
    const r = await env.sync({ config: stripedConfig(env) });
    expect(r.failures).toEqual([]);
    const reqs = env.server.requests(item.path);
    // The probe for the first part (answered 200, dropped), then the whole file in one request.
    expect(reqs.map((q) => [q.status, q.range])).toEqual([
      [200, `bytes=0-${PART - 1}`],
      [200, undefined],
    ]);
    expect(await partialLeft(env)).toEqual([]);
  });

  it('a part that fails mid-way: the attempt resumes from the contiguous prefix, not from zero', async () => {
    env = await stripedEnv();
    const item = newestSquashfs(env);
    const cutAt = 4 * PART;
    const served = new Map<number, Promise<void>>();
    let cut = false;
    env.server.intercept = async (req, res, p) => {
      const rg = rangeOf({ range: req.headers.range });
      if (p !== item.path || !rg) return false;
      const body = await answerPart(env!, res, p, rg[0], Math.min(rg[1], BIG - 1));
      if (rg[0] === cutAt && !cut) {
        cut = true;
        // The parts before it reach the client first, so the prefix on disk is known.
        await Promise.all([...served.entries()].filter(([s]) => s < cutAt).map(([, d]) => d));
        await new Promise<void>((ok) => res.write(body.subarray(0, PART / 2), () => ok()));
        await new Promise((ok) => setTimeout(ok, 1000));
        res.socket?.destroy();
        return true;
      }
      served.set(rg[0], new Promise<void>((ok) => res.end(body, () => ok())));
      return true;
    };
    const r = await env.sync({ config: stripedConfig(env) });
    expect(r.failures).toEqual([]);
    expect(cut).toBe(true);
    const starts = env.server.requests(item.path).map((q) => rangeOf(q)![0]);
    // Parts 0-3 were whole on disk before the cut: the retry continues after them and never asks for byte 0 again.
    expect(starts.filter((s) => s === 0)).toHaveLength(1);
    expect(starts.filter((s) => s === cutAt).length).toBeGreaterThanOrEqual(2);
    expect(createHash('sha256').update(await storedBytes(env, item.sha256)).digest('hex')).toBe(item.sha256);
    expect(await partialLeft(env)).toEqual([]);
  });

  it('corruption in one part fails the whole file; it is fetched again from zero once, then given up', async () => {
    env = await stripedEnv();
    const item = newestSquashfs(env);
    let corrupted = 0;
    env.server.intercept = async (req, res, p) => {
      const rg = rangeOf({ range: req.headers.range });
      if (p !== item.path || !rg) return false;
      const flip = rg[0] === 3 * PART;
      if (flip) corrupted++;
      const body = await answerPart(env!, res, p, rg[0], Math.min(rg[1], BIG - 1), (b) => {
        if (flip) b[100] = b[100]! ^ 0xff;
        return b;
      });
      res.end(body);
      return true;
    };
    const checksumFailures: string[] = [];
    const r = await env.sync({ config: stripedConfig(env), hooks: { onChecksumFailure: (s) => checksumFailures.push(s) } });
    expect(corrupted).toBe(2);
    expect(checksumFailures).toHaveLength(2);
    // (The selection then lacks its only image, which the MAAS tree check reports too.)
    expect(r.failures.filter((f) => f.code === 'MM_CHECKSUM_MISMATCH').map((f) => f.path)).toEqual([item.path]);
    await expect(storedBytes(env, item.sha256)).rejects.toThrow(/not in the store/);
    expect(await partialLeft(env)).toEqual([]);
  });

  it('a part answered with the wrong Content-Range discards the file and starts again from zero', async () => {
    env = await stripedEnv();
    const item = newestSquashfs(env);
    let lied = false;
    env.server.intercept = async (req, res, p) => {
      const rg = rangeOf({ range: req.headers.range });
      if (p !== item.path || !rg || rg[0] !== 2 * PART || lied) return false;
      lied = true;
      const body = await answerPart(env!, res, p, rg[0] + 10, rg[1] + 10);
      res.end(body);
      return true;
    };
    const r = await env.sync({ config: stripedConfig(env) });
    expect(r.failures).toEqual([]);
    expect(lied).toBe(true);
    const starts = env.server.requests(item.path).map((q) => rangeOf(q)![0]);
    expect(starts.filter((s) => s === 0)).toHaveLength(2);
    expect(createHash('sha256').update(await storedBytes(env, item.sha256)).digest('hex')).toBe(item.sha256);
  });

  it('after a crash, trims the partial file to the prefix its marker vouches for and resumes there', async () => {
    env = await stripedEnv();
    const item = newestSquashfs(env);
    const bytes = await readFile(join(env.upstream.dir, item.path));
    // What a killed striped download leaves: a good prefix, a gap, parts further on, the file at full length.
    const left = Buffer.from(bytes);
    left.fill(0, 3 * PART, 5 * PART);
    await mkdir(join(env.dataDir, 'partial'), { recursive: true });
    await writeFile(join(env.dataDir, 'partial', `${item.sha256}.part`), left);
    await writeFile(join(env.dataDir, 'partial', `${item.sha256}.part.at`), String(3 * PART));
    const checksumFailures: string[] = [];
    const r = await env.sync({ config: stripedConfig(env), hooks: { onChecksumFailure: (s) => checksumFailures.push(s) } });
    expect(r.failures).toEqual([]);
    expect(checksumFailures).toEqual([]);
    const starts = env.server.requests(item.path).map((q) => rangeOf(q)![0]);
    expect(Math.min(...starts)).toBe(3 * PART);
    expect(createHash('sha256').update(await storedBytes(env, item.sha256)).digest('hex')).toBe(item.sha256);
    expect(await partialLeft(env)).toEqual([]);
  });

  it('an aborted sync keeps the contiguous prefix of a striped file, without a marker, and the next sync resumes there', async () => {
    env = await stripedEnv();
    const item = newestSquashfs(env);
    const stopAt = 6 * PART;
    const ac = new AbortController();
    env.server.intercept = async (req, res, p) => {
      const rg = rangeOf({ range: req.headers.range });
      if (p !== item.path || !rg || rg[0] < stopAt) return false;
      // From here on parts hang mid-way; the sync is aborted once one of them is on its way.
      const body = await answerPart(env!, res, p, rg[0], Math.min(rg[1], BIG - 1));
      res.write(body.subarray(0, 1000));
      setTimeout(() => ac.abort(), 500);
      await new Promise((ok) => res.once('close', ok));
      return true;
    };
    await expect(env.sync({ config: stripedConfig(env), signal: ac.signal })).rejects.toMatchObject({ code: 'MM_ABORTED' });
    const part = join(env.dataDir, 'partial', `${item.sha256}.part`);
    const kept = (await stat(part)).size;
    expect(await partialLeft(env)).toEqual([`${item.sha256}.part`]);
    expect(kept % PART).toBe(0);
    expect(kept).toBeLessThanOrEqual(stopAt);
    expect((await readFile(part)).equals((await readFile(join(env.upstream.dir, item.path))).subarray(0, kept))).toBe(true);
    env.server.intercept = undefined;
    env.server.log.length = 0;
    const r = await env.sync({ config: stripedConfig(env) });
    expect(r.failures).toEqual([]);
    expect(Math.min(...env.server.requests(item.path).map((q) => rangeOf(q)![0]))).toBe(kept);
    expect(createHash('sha256').update(await storedBytes(env, item.sha256)).digest('hex')).toBe(item.sha256);
  });

  /**
   * A 4 MiB file in parts of up to 2 MiB over 2 connections: the first part is [0, 2 MiB), the
   * second request ([2 MiB, 3 MiB)) trickles as one slow flow of a long path would; the other
   * connection brings the rest and then has nothing left to ask for.
   */
  async function endGame(onSplit: (res: ServerResponse, body: Buffer) => Promise<void> = async (res, body) => void res.end(body)) {
    const MIB = 1 << 20;
    env = await makeEnv({ sizeOf: (ftype) => (ftype === 'squashfs' ? 4 * MIB : 16 * 1024) });
    const item = newestSquashfs(env);
    expect(item.size).toBe(4 * MIB);
    const asked: [number, number][] = [];
    const seen = { slowEndedEarly: false, split: undefined as [number, number] | undefined };
    let splitAsked!: () => void;
    const splitArrived = new Promise<void>((ok) => (splitAsked = ok));
    env.server.intercept = async (req, res, p) => {
      const rg = rangeOf({ range: req.headers.range });
      if (p !== item.path || !rg) return false;
      const range: [number, number] = [rg[0], Math.min(rg[1], item.size - 1)];
      asked.push(range);
      const body = await answerPart(env!, res, p, range[0], range[1]);
      const slow = asked[1];
      if (range === slow) {
        const closed = new Promise<void>((ok) =>
          res.once('close', () => {
            seen.slowEndedEarly = !res.writableFinished;
            ok();
          }),
        );
        // A first piece, then nothing until the other connection has split this part: however slow the
        // machine, the split is then always there to take (more than 512 KiB still to come).
        await new Promise<void>((ok) => res.write(body.subarray(0, 64 * 1024), () => ok()));
        await Promise.race([splitArrived, closed]);
        for (let at = 64 * 1024; at < body.length && !res.destroyed; at += 32 * 1024) {
          await new Promise<void>((ok) => res.write(body.subarray(at, at + 32 * 1024), () => ok()));
          await new Promise((ok) => setTimeout(ok, 40));
        }
        res.end();
      } else if (slow && range[0] > slow[0] && range[0] <= slow[1] && !seen.split) {
        seen.split = range;
        splitAsked();
        await onSplit(res, body);
      } else {
        res.end(body);
      }
      return true;
    };
    const r = await env.sync({ config: stripedConfig(env, { stripes: 2, stripeSize: 2 * MIB }) });
    return { r, item, asked, seen, MIB };
  }

  it('at the end, a connection with nothing left takes the back half of a slow part; that part\'s request ends at the split', async () => {
    const { r, item, asked, seen, MIB } = await endGame();
    expect(r.failures).toEqual([]);
    expect(asked.slice(0, 2)).toEqual([[0, 2 * MIB - 1], [2 * MIB, 3 * MIB - 1]]);
    // The split-off request: from inside the slow part to its end, at least 256 KiB (SPLIT_MIN).
    expect(seen.split).toBeDefined();
    expect(seen.split![1]).toBe(3 * MIB - 1);
    expect(seen.split![1] - seen.split![0] + 1).toBeGreaterThanOrEqual(256 * 1024);
    expect(seen.slowEndedEarly).toBe(true);
    expect(createHash('sha256').update(await storedBytes(env!, item.sha256)).digest('hex')).toBe(item.sha256);
    expect(await partialLeft(env!)).toEqual([]);
  });

  it('a split-off part that breaks: the attempt resumes from the contiguous prefix and the file is whole', async () => {
    const { r, item, seen } = await endGame(async (res, body) => {
      await new Promise<void>((ok) => res.write(body.subarray(0, body.length >> 1), () => ok()));
      res.socket?.destroy();
    });
    expect(r.failures).toEqual([]);
    expect(seen.split).toBeDefined();
    const starts = env!.server.requests(item.path).map((q) => rangeOf(q)![0]);
    // The first part was whole on disk: the retry never asks for byte 0 again.
    expect(starts.filter((s) => s === 0)).toHaveLength(1);
    expect(createHash('sha256').update(await storedBytes(env!, item.sha256)).digest('hex')).toBe(item.sha256);
    expect(await partialLeft(env!)).toEqual([]);
  });
});
