import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { PublicStatus } from '../../src/ops/status.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { listen, makeOps, opsApp } from './helpers.js';

/**
 * A filter that matches nothing upstream shows on the status page (headless
 * Chromium reads it) and in /status.json, with its code and the nearest
 * value upstream offers.
 */

let env: Env | undefined;
let profile: string | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
  if (profile) await rm(profile, { recursive: true, force: true });
  profile = undefined;
});

async function dumpDom(url: string): Promise<string> {
  profile ??= await mkdtemp(join(tmpdir(), 'mm-chromium-'));
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${profile}`, '--dump-dom', url];
  return new Promise((resolve, reject) => {
    execFile('chromium', args, { timeout: 30_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`chromium failed: ${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

describe('status page warnings', () => {
  it('lists MM_FILTER_UNMATCHED with its did-you-mean, in the page and in status.json', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const config = env.config([{ filters: [['release=nobel', 'arch=amd64'], ['release=jammy', 'arch=amd64']] }]);
    const ops = makeOps({ config: () => config });
    const http = await listen(opsApp(ops));
    try {
      const before = await dumpDom(`${http.url}/`);
      expect(before).not.toContain('id="warnings"');

      const record = await ops.coordinator.start('api').done;
      expect(record.result).toBe('ok');
      const page = await dumpDom(`${http.url}/`);
      const block = /<div id="warnings"><h3>Warnings<\/h3><ul class="warnings">([\s\S]*?)<\/ul><\/div>/.exec(page);
      expect(block, page).not.toBeNull();
      const items = [...block![1]!.matchAll(/<li>([\s\S]*?)<\/li>/g)].map((m) => m[1]!.replace(/&quot;/g, '"'));
      expect(items).toEqual([
        '<code>MM_FILTER_UNMATCHED</code> source stable: filter "release=nobel" matches nothing upstream offers; did you mean noble? values of release upstream offers: jammy, noble',
      ]);

      const res = await request(`${http.url}/status.json`);
      const status = (await res.body.json()) as PublicStatus;
      expect(status.warnings).toEqual([expect.objectContaining({ source: 'stable', code: 'MM_FILTER_UNMATCHED', term: 'release=nobel', suggestions: ['noble'] })]);
      expect(status.lastSync!.warnings).toEqual(status.warnings);
    } finally {
      await http.close();
      await ops.shutdown();
    }
  });
});
