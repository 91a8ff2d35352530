import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApp } from '../../src/http/index.js';
import { silentLogger } from '../../src/log.js';
import { Resolver } from '../../src/store/resolver.js';
import { publishSnapshot, snapshotId, switchCurrent, tempDataDir, type TempData } from './fixture.js';
import { PREFIX } from './server.js';

let t: TempData;
const INDEX = 'streams/v1/index.json';
const config = { http: { prefix: PREFIX, listen: [], publicUrl: undefined } };

beforeAll(async () => {
  t = await tempDataDir('mm-rollback-');
});
afterAll(async () => {
  await t.cleanup();
});

describe('Last-Modified across a rollback', () => {
  it('never goes back in time, so If-Modified-Since cannot hide the rolled-back bytes', async () => {
    // linkTtlMs 0: every request reads the link, so the test need not wait out the daemon's second.
    const logger = silentLogger();
    const app = createHttpApp({ config, layout: t.layout, logger, namespace: new Resolver({ layout: t.layout, logger, linkTtlMs: 0 }) });
    const nextSecond = () => new Promise((r) => setTimeout(r, 1_100)); // HTTP dates have whole seconds
    await publishSnapshot(t.layout, { id: snapshotId(1), metadata: { [INDEX]: '{"old":true}\n' } });
    // The older tree's files were written days ago, as a kept snapshot's are.
    const old = new Date(Date.now() - 2 * 86_400_000);
    await utimes(join(t.layout.snapshot(snapshotId(1)), INDEX), old, old);
    // Served (and cached) while it was current.
    expect((await request(app).get(PREFIX + INDEX)).text).toBe('{"old":true}\n');
    await nextSecond();
    await publishSnapshot(t.layout, { id: snapshotId(2), metadata: { [INDEX]: '{"new":true}\n' } });
    // Published by cron's CLI sync: this server's caches are not cleared.
    const seen = await request(app).get(PREFIX + INDEX);
    expect(seen.text).toBe('{"new":true}\n');
    const lastModified = seen.headers['last-modified']!;

    // Rolled back by another process (the CLI): nobody tells this server, its caches still hold the old tree.
    await nextSecond();
    await switchCurrent(t.layout, snapshotId(1));
    const after = await request(app).get(PREFIX + INDEX).set('If-Modified-Since', lastModified);
    expect(after.status).toBe(200);
    expect(after.text).toBe('{"old":true}\n');
    expect(Date.parse(after.headers['last-modified']!)).toBeGreaterThan(Date.parse(lastModified));
    // And the same date asked again is a 304, as it should be.
    const again = await request(app).get(PREFIX + INDEX).set('If-Modified-Since', after.headers['last-modified']!);
    expect(again.status).toBe(304);
  });
});
