import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { gateItems, listen, makeOps, opsApp, PATIENT_DOWNLOAD, waitFor } from './helpers.js';

/** Screenshots are kept here for a person to look at (outside the work tree). */
const OUT_DIR = join(tmpdir(), 'maas-mirror-ops-out');

let env: Env | undefined;
let profile: string | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
  if (profile) await rm(profile, { recursive: true, force: true });
});

async function chromium(args: string[]): Promise<string> {
  profile ??= await mkdtemp(join(tmpdir(), 'mm-chromium-'));
  return new Promise((resolve, reject) => {
    execFile(
      'chromium',
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        `--user-data-dir=${profile}`,
        '--window-size=412,915',
        ...args,
      ],
      { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`chromium failed: ${err.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

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
    const config = env.config(undefined, PATIENT_DOWNLOAD);
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
      expect(text).toContain(`maas $PROFILE boot-sources create url=${http.url}/maas/images/ephemeral-v3/stable/ keyring_filename=/etc/maas/maas-mirror.gpg`);
      expect(text).toContain(`curl -fsSL -o /etc/maas/maas-mirror.gpg ${http.url}/keyring.gpg`);
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
