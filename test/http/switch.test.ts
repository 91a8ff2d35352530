import { createHash, randomBytes } from 'node:crypto';
import { get, Agent, type IncomingMessage } from 'node:http';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishSnapshot, sha256, snapshotId, tempDataDir, type TempData } from './fixture.js';
import { listenOnLoopback, PREFIX } from './server.js';

const ITEM = 'ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs';
const SIZE = 8 * 1024 * 1024;

let t: TempData;
let server: Awaited<ReturnType<typeof listenOnLoopback>>;
const agent = new Agent({ keepAlive: false, maxSockets: 200 });

interface Download {
  /** Resolves once the first body bytes arrived (the server has the file open). */
  started: Promise<void>;
  /** Lets the body flow; resolves with the sha256 of the whole body. */
  finish(): Promise<{ status: number; sha256: string; bytes: number }>;
}

/** A download that stops reading after its first chunk until told to go on. */
function download(url: string): Download {
  let res!: IncomingMessage;
  const hash = createHash('sha256');
  let bytes = 0;
  const started = new Promise<void>((resolve, reject) => {
    get(url, { agent }, (r) => {
      res = r;
      r.once('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        r.pause();
        resolve();
      });
      r.on('error', reject);
    }).on('error', reject);
  });
  return {
    started,
    finish: async () => {
      await started;
      return new Promise((resolve, reject) => {
        res.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
        });
        res.on('end', () => resolve({ status: res.statusCode!, sha256: hash.digest('hex'), bytes }));
        res.on('error', reject);
        res.resume();
      });
    },
  };
}

beforeAll(async () => {
  t = await tempDataDir('mm-switch-');
  server = await listenOnLoopback(t.layout);
});

afterAll(async () => {
  agent.destroy();
  await server?.close(100);
  await t?.cleanup();
});

describe('publishing during downloads', () => {
  it('gives every one of 50 concurrent downloads wholly the old or wholly the new bytes', async () => {
    const oldBytes = randomBytes(SIZE);
    const newBytes = randomBytes(SIZE);
    const OLD = sha256(oldBytes);
    const NEW = sha256(newBytes);
    await publishSnapshot(t.layout, { id: snapshotId(1), items: { [ITEM]: oldBytes, 'only/in/old': 'OLD-ONLY' } });
    const url = `${server.base}${PREFIX}${ITEM}`;

    // 25 begin before the switch and stall mid-body…
    const before = Array.from({ length: 25 }, () => download(url));
    await Promise.all(before.map((d) => d.started));

    // …the switch lands (and the old tree and blobs are deleted) while 25 more arrive around it.
    const around: Download[] = [];
    const arrivals = (async () => {
      for (let i = 0; i < 25; i++) {
        around.push(download(url));
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await new Promise((r) => setTimeout(r, 20));
    await publishSnapshot(t.layout, { id: snapshotId(2), items: { [ITEM]: newBytes, 'only/in/new': 'NEW-ONLY' } });
    server.invalidate();
    await rm(t.layout.snapshot(snapshotId(1)), { recursive: true, force: true });
    await rm(t.layout.blob(OLD));
    await arrivals;
    await Promise.all(around.map((d) => d.started));

    const results = await Promise.all([...before, ...around].map((d) => d.finish()));
    expect(results).toHaveLength(50);
    for (const r of results) {
      expect(r.status).toBe(200);
      expect(r.bytes).toBe(SIZE);
      expect([OLD, NEW]).toContain(r.sha256);
    }
    // The ones that had begun finish with what they began with.
    expect(results.slice(0, 25).every((r) => r.sha256 === OLD)).toBe(true);
    const after = await download(url).finish();
    expect(after.sha256).toBe(NEW);
    expect((await fetch(`${server.base}${PREFIX}only/in/old`)).status).toBe(404);
    expect(await (await fetch(`${server.base}${PREFIX}only/in/new`)).text()).toBe('NEW-ONLY');
  });
});
