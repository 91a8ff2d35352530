import { execFile, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishSnapshot, sampleTree, sha256, snapshotId, tempDataDir, type TempData } from './fixture.js';
import { listenOnLoopback, PREFIX } from './server.js';

const run = promisify(execFile);
const ITEM = 'ubuntu/amd64/ga-24.04/noble/stable/20250701/boot-initrd';

let t: TempData;
let server: Awaited<ReturnType<typeof listenOnLoopback>>;
let tree: ReturnType<typeof sampleTree>;

interface CurlAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** curl against the real server; headers from -D, body from -o. */
async function curl(path: string, ...args: string[]): Promise<CurlAnswer> {
  const out = join(t.dataDir, `body-${Math.random().toString(36).slice(2)}`);
  const { stdout } = await run('curl', ['-s', '-S', '-D', '-', '-o', out, ...args, server.base + path]);
  const blocks = stdout.trim().split(/\r?\n\r?\n/);
  const lines = blocks[blocks.length - 1]!.split(/\r?\n/);
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(lines[0]!)![1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  const body = await readFile(out).catch(() => Buffer.alloc(0));
  return { status, headers, body };
}

beforeAll(async () => {
  // No skipping: without curl this whole file fails.
  execFileSync('curl', ['--version']);
  t = await tempDataDir('mm-curl-');
  tree = sampleTree('curl');
  await publishSnapshot(t.layout, { id: snapshotId(1), metadata: tree.metadata, items: tree.items });
  server = await listenOnLoopback(t.layout);
});

afterAll(async () => {
  await server?.close();
  await t?.cleanup();
});

describe('curl against the listening server', () => {
  it('downloads an item whole', async () => {
    const r = await curl(PREFIX + ITEM);
    expect(r.status).toBe(200);
    expect(sha256(r.body)).toBe(sha256(tree.items[ITEM]!));
    expect(r.headers.etag).toBe(`"${sha256(tree.items[ITEM]!)}"`);
  });

  it('fetches byte ranges (-r) and resumes a partial download (-C)', async () => {
    const body = Buffer.from(tree.items[ITEM]!);
    let r = await curl(PREFIX + ITEM, '-r', '100-199');
    expect(r.status).toBe(206);
    expect(r.headers['content-range']).toBe(`bytes 100-199/${body.length}`);
    expect(r.body).toEqual(body.subarray(100, 200));
    r = await curl(PREFIX + ITEM, '-C', '1000');
    expect(r.status).toBe(206);
    expect(r.body).toEqual(body.subarray(1000));
    r = await curl(PREFIX + ITEM, '-r', `${body.length}-`);
    expect(r.status).toBe(416);
    expect(r.headers['content-range']).toBe(`bytes */${body.length}`);
  });

  it('revalidates with If-None-Match and If-Modified-Since (-z)', async () => {
    const first = await curl(PREFIX + 'streams/v1/index.sjson');
    expect(first.status).toBe(200);
    let r = await curl(PREFIX + 'streams/v1/index.sjson', '-H', `If-None-Match: ${first.headers.etag}`);
    expect(r.status).toBe(304);
    expect(r.body.length).toBe(0);
    r = await curl(PREFIX + 'streams/v1/index.sjson', '-z', first.headers['last-modified']!);
    expect(r.status).toBe(304);
    r = await curl(PREFIX + ITEM, '-r', '0-9', '-H', `If-Range: ${`"${sha256(tree.items[ITEM]!)}"`}`);
    expect(r.status).toBe(206);
    r = await curl(PREFIX + ITEM, '-r', '0-9', '-H', 'If-Range: "old"');
    expect(r.status).toBe(200);
  });

  it('gets gzip for metadata with --compressed and the same bytes after decoding', async () => {
    const r = await curl(PREFIX + 'streams/v1/index.json', '--compressed');
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(r.body.toString()).toBe(tree.metadata['streams/v1/index.json']);
  });

  it('HEAD (-I) gives the length without a body', async () => {
    const r = await curl(PREFIX + ITEM, '-I');
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(tree.items[ITEM]!.length));
  });

  it('answers 405 to other methods', async () => {
    const r = await curl(PREFIX + ITEM, '-X', 'DELETE');
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('GET, HEAD');
  });
});
