import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';

/** On a long path every request costs a round trip: what a sync asks for, and in which order, is its speed. */

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const PRODUCTS_RE = /^streams\/v1\/(?!index).*\.sjson$/;

describe('metadata across a long path', () => {
  it('fetches the products files of a source at once, and still reports failures in index order', async () => {
    expect.assertions(4);
    env = await makeEnv();
    let inFlight = 0;
    let most = 0;
    env.server.intercept = async (_req, _res, path) => {
      if (!PRODUCTS_RE.test(path)) return false;
      most = Math.max(most, ++inFlight);
      await sleep(150);
      inFlight--;
      return false;
    };
    const report = await env.sync();
    expect(report.result).toBe('ok');
    expect(env.server.requests(PRODUCTS_RE).length).toBeGreaterThanOrEqual(3);
    expect(most).toBeGreaterThanOrEqual(2);

    // Two documents broken: the one the index lists first is the one reported.
    const index = JSON.parse(await readFile(join(env.upstream.dir, 'streams/v1/index.json'), 'utf8')) as { index: Record<string, { path: string }> };
    const listed = Object.values(index.index).map((e) => e.path.replace(/\.json$/, '.sjson'));
    const [first, second] = listed;
    env.server.intercept = async (_req, res, path) => {
      if (path !== first && path !== second) return false;
      // The second fails at once, the first only later: order of arrival must not decide.
      if (path === first) await sleep(200);
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`not a signed document (${path})`);
      return true;
    };
    const broken = await env.sync();
    expect(broken.failures.map((f) => f.message).join('\n')).toContain(first);
  }, 60_000);
});
