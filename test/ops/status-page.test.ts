import { mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { chromium } from './chromium.js';
import { gateItems, listen, makeOps, opsApp, PATIENT_DOWNLOAD, waitFor } from './helpers.js';

/** Screenshots are kept here for a person to look at (outside the work tree). */
const OUT_DIR = join(tmpdir(), 'maas-mirror-ops-out');

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});


/** The text a person reads: the DOM without tags, scripts and styles. */
function visibleText(dom: string): string {
  return dom
    .replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/\s+/g, ' ');
}

describe('status page in headless Chromium', () => {
  it('shows a live progress bar during a sync and the result, products and MAAS commands after it', async () => {
    env = await makeEnv();
    // Three item downloads go through, the others wait at the gate: the sync stays
    // in its download phase, with some progress, for as long as the test looks.
    const { open } = gateItems(env.server, 3);
    const config = env.config(undefined, { ...PATIENT_DOWNLOAD, http: { publicUrl: 'http://mirror.example:8080/' } });
    const ops = makeOps({ config: () => config });
    const http = await listen(opsApp(ops));
    await mkdir(OUT_DIR, { recursive: true });
    try {
      const { done } = ops.coordinator.start('api');
      await waitFor(() => (ops.coordinator.running?.progress.filesDone ?? 0) >= 3, 15_000, 'three files downloaded');

      // During: the server-rendered bar, then the script's own poll (virtual time lets its 2 s timer fire).
      const during = await chromium(['--dump-dom', '--virtual-time-budget=5000', `${http.url}/`]);
      expect(during).toContain('data-running="1"');
      expect(during).toMatch(/<progress id="bar" max="1" value="0\.\d+">/);
      expect(during).toMatch(/data-polled="\d{4}-\d\d-\d\dT/);
      const duringText = visibleText(during);
      expect(duringText).toContain('syncing');
      expect(duringText).toMatch(/download: [\d.]+ [KM]i?B of [\d.]+ [KM]iB, \d+ of \d+ files/);
      const duringShot = join(OUT_DIR, 'status-during-sync.png');
      await chromium([`--screenshot=${duringShot}`, `${http.url}/`]);
      expect((await stat(duringShot)).size).toBeGreaterThan(5_000);

      open();
      const record = await done;
      expect(record.result).toBe('ok');
      await ops.storeTotals.refresh();
      const after = await chromium(['--dump-dom', `${http.url}/`]);
      expect(after).toContain('data-running="0"');
      expect(after).toMatch(/<div id="progress" hidden="?"?>/);
      const text = visibleText(after);
      expect(text).toContain(`ok ${record.id} (api)`);
      expect(text).toContain(`published ${record.snapshot}`);
      expect(text).toContain('com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04');
      expect(text).toContain('ubuntu noble (24.04 LTS) amd64 ga-24.04');
      expect(text).toMatch(/20250709 · \d+ files · [\d.]+ KiB/);
      expect(text).toContain('signature verified');
      expect(text).toMatch(/Store [\d.]+ [KM]iB in \d+ files/);
      expect(text).toMatch(/Disk [\d.]+ [KMGT]iB used of [\d.]+ [KMGT]iB/);
      expect(text).toContain('maas $PROFILE boot-sources create url=http://mirror.example:8080/maas/images/ephemeral-v3/stable/ keyring_data@=maas-mirror.gpg');
      expect(text).toContain('curl -fsSL -o maas-mirror.gpg http://mirror.example:8080/keyring.gpg');
      expect(text).toContain("os=ubuntu release=noble arches=amd64");
      const afterShot = join(OUT_DIR, 'status-after-sync.png');
      await chromium([`--screenshot=${afterShot}`, `${http.url}/`]);
      expect((await stat(afterShot)).size).toBeGreaterThan(5_000);
      // The whole page at phone width, for a person to read through.
      const fullShot = join(OUT_DIR, 'status-after-sync-full.png');
      await chromium([`--screenshot=${fullShot}`, '--window-size=412,3200', `${http.url}/`]);
      console.log(`status page screenshots: ${duringShot} ${afterShot} ${fullShot}`);
    } finally {
      open();
      await http.close();
    }
  });
});

describe('status page: what it claims is what happened', () => {
  it('shows no "signature verified" badge for a source whose only sync failed at DNS', async () => {
    env = await makeEnv();
    const config = env.config([{ name: 'broken', url: 'http://no-such-host.invalid/' }, { name: 'good' }]);
    const ops = makeOps({ config: () => config });
    const http = await listen(opsApp(ops));
    try {
      const before = visibleText(await chromium(['--dump-dom', `${http.url}/`]));
      expect(before).not.toContain('signature verified');
      expect(before).toContain('broken not checked yet');
      const record = await ops.coordinator.start('api').done;
      expect(record.result).toBe('partial');
      const text = visibleText(await chromium(['--dump-dom', `${http.url}/`]));
      expect(text).toMatch(/broken not verified: last sync could not read it \(MM_UPSTREAM_\w+\)/);
      expect(text).toContain('good signature verified');
      expect(text.match(/signature verified/g)).toHaveLength(1);
    } finally {
      await http.close();
    }
  }, 60_000);

  it('keeps the last sync across a daemon restart, read from the state on disk', async () => {
    env = await makeEnv();
    const config = env.config();
    const first = makeOps({ config: () => config });
    const record = await first.coordinator.start('api').done;
    expect(record.result).toBe('ok');
    await first.shutdown();

    const second = makeOps({ config: () => config });
    const http = await listen(opsApp(second));
    try {
      const text = visibleText(await chromium(['--dump-dom', `${http.url}/`]));
      expect(text).toContain(`ok ${record.id} (api)`);
      expect(text).not.toContain('none yet');
      expect(text).toContain('stable signature verified');
    } finally {
      await http.close();
    }
  }, 60_000);

  it('tells lowlatency from generic kernels, shows OR groups as groups and says "1 file"', async () => {
    env = await makeEnv();
    const generic = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
    const { doc } = env.upstream.product(generic);
    const product = doc.products[generic]!;
    const low = JSON.parse(JSON.stringify(product).replaceAll('ga-24.04', 'ga-24.04-lowlatency')) as typeof product;
    Object.assign(low, { kflavor: 'lowlatency' });
    for (const v of Object.values(low.versions)) for (const i of Object.values(v.items)) Object.assign(i, { sha256: '', size: 0 });
    doc.products[`${generic}-lowlatency`] = low;
    await env.upstream.write();
    const config = env.config([{ filters: [['release=noble', 'arch=amd64'], ['bootloader-type=uefi', 'path~shim']] }]);
    const ops = makeOps({ config: () => config });
    const http = await listen(opsApp(ops));
    try {
      expect((await ops.coordinator.start('api').done).result).toBe('ok');
      const text = visibleText(await chromium(['--dump-dom', `${http.url}/`]));
      expect(text).toContain('ubuntu noble (24.04 LTS) amd64 ga-24.04 generic kernel');
      expect(text).toContain('ubuntu noble (24.04 LTS) amd64 ga-24.04-lowlatency lowlatency kernel');
      expect(text).toContain('filters: one of release=noble and arch=amd64 or bootloader-type=uefi and path~shim');
      expect(text).toMatch(/ · 1 file · /);
      expect(text).not.toMatch(/\b1 files\b/);
      expect(text).toContain('newest 1 version per product');
    } finally {
      await http.close();
    }
  }, 60_000);

  it('shows the time left while a sync downloads, in the page and in its own poll', async () => {
    env = await makeEnv();
    // Slow enough that the sync is still downloading while Chromium looks; aborted afterwards.
    const config = env.config(undefined, { download: { concurrency: 2, retries: 1, connectTimeout: '2s', idleTimeout: '60s', rateLimit: 64 * 1024 } });
    const ops = makeOps({ config: () => config });
    const http = await listen(opsApp(ops));
    try {
      const { done } = ops.coordinator.start('api');
      await waitFor(async () => (await ops.publicStatus()).running?.progress.etaSeconds, 30_000, 'a download rate');
      const dom = await chromium(['--dump-dom', '--virtual-time-budget=5000', `${http.url}/`]);
      expect(dom).toMatch(/data-polled="/);
      expect(visibleText(dom)).toMatch(/download: [\d.]+ [KM]i?B of [\d.]+ [KM]iB, \d+ of \d+ files, [\d.]+ [KM]?i?B\/s, about (\d+ h )?(\d+ min ?)?(\d+ s)? ?left/);
      await ops.coordinator.abort();
      await done;
    } finally {
      await http.close();
    }
  }, 90_000);
});
