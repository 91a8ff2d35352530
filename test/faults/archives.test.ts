import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { silentLogger, type Logger } from '../../src/log.js';
import type { SyncFailure } from '../../src/mirror/sync.js';
import { captureLogger } from '../http/fixture.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { manyEmptyEntries, slowArchive, trailingZerosBomb, zeroBomb } from './hostile-archives.js';

/**
 * Signed but hostile bootloader archives from the generated upstream: a
 * decompression bomb, an archive of 300,000 entries, one that takes too long.
 * Each is refused within its budget and reported (code, product, reason);
 * the event loop keeps answering HTTP meanwhile, the previous bootloaders keep
 * serving, and a daemon started over such a store listens at once.
 */

const UEFI = 'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64';
/** Far above what a responsive loop shows on a loaded machine; the bomb blocked it for ~27 s. */
const MAX_LOOP_DELAY_MS = 3000;

let env: Env;
let daemon: Daemon;
let oldShim: string;

const daemonConfig = () => env.config([{}], { schedule: { onStart: false, interval: '1h', jitter: '0s' } });

async function start(logger: Logger = silentLogger()): Promise<Daemon> {
  return startDaemon({
    config: daemonConfig(),
    logger,
    httpListen: [{ host: '127.0.0.1', port: 0 }],
    tftpListen: [{ host: '127.0.0.1', port: 0 }],
    retryBaseMs: 5,
    drainMs: 500,
  });
}

async function getShim(d: Daemon): Promise<{ status: number; body: string }> {
  const res = await request(`http://127.0.0.1:${d.http.addresses[0]!.port}/bootx64.efi`, { headersTimeout: 60_000, bodyTimeout: 60_000 });
  return { status: res.statusCode, body: await res.body.text() };
}

/** A new version of the UEFI bootloader whose shim archive is `bytes`, signed into the upstream. */
async function publishHostile(version: string, bytes: Buffer): Promise<string> {
  env.upstream.addVersion(UEFI, version);
  const path = env.upstream.product(UEFI).doc.products[UEFI]!.versions[version]!.items['shim-signed']!.path;
  await env.upstream.setItemBytes(path, bytes);
  await env.upstream.write();
  return path;
}

/** Runs `work` while polling the shim over HTTP and watching the event loop. */
async function watched<T>(d: Daemon, work: () => Promise<T>): Promise<{ result: T; maxDelayMs: number; polls: { status: number; body: string }[] }> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const polls: { status: number; body: string }[] = [];
  let done = false;
  const poller = (async () => {
    do {
      polls.push(await getShim(d));
      await new Promise((r) => setTimeout(r, 50));
    } while (!done);
  })();
  try {
    const result = await work();
    return { result, maxDelayMs: h.max / 1e6, polls };
  } finally {
    done = true;
    await poller;
    h.disable();
  }
}

async function leftovers(): Promise<string[]> {
  return (await readdir(join(env.dataDir, 'bootloaders.d'))).filter((n) => n.startsWith('.tmp-'));
}

function refusal(path: string, reason: RegExp): Partial<SyncFailure> {
  return expect.objectContaining({ source: 'bootloaders', code: 'MM_ARCHIVE_REFUSED', product: UEFI, path, message: expect.stringMatching(reason) }) as Partial<SyncFailure>;
}

beforeAll(async () => {
  env = await makeEnv({ samples: ['stable-bootloader-download.json'] });
  daemon = await start();
  const first = await daemon.ops.coordinator.start('initial').done;
  expect(first.failures).toEqual([]);
  const shim = await getShim(daemon);
  expect(shim.status).toBe(200);
  oldShim = shim.body;
});

afterAll(async () => {
  await daemon?.stop();
  await env?.close();
});

describe('hostile bootloader archives', () => {
  it('an xz bomb (one 4 GiB entry of zeros) is refused without blocking the event loop; the previous bootloaders keep serving', async () => {
    const bomb = zeroBomb();
    expect(bomb.length).toBeLessThan(1024 * 1024);
    const path = await publishHostile('20260101.0', bomb);
    const linkBefore = await readlink(join(env.dataDir, 'bootloaders'));
    const { result, maxDelayMs, polls } = await watched(daemon, () => daemon.ops.coordinator.start('bomb').done);
    expect(result.published).toBe(true);
    expect(result.failures).toEqual([refusal(path, /unpacks to more than \d+ bytes/)]);
    expect(maxDelayMs).toBeLessThan(MAX_LOOP_DELAY_MS);
    expect(polls.length).toBeGreaterThan(0);
    for (const p of polls) expect(p).toEqual({ status: 200, body: oldShim });
    expect(await readlink(join(env.dataDir, 'bootloaders'))).toBe(linkBefore);
    expect(await leftovers()).toEqual([]);
  });

  it('4 GiB of zeros after the end of the tar, declared by no header, are cut by the decompressed-bytes budget', async () => {
    const path = await publishHostile('20260101.5', trailingZerosBomb());
    const { result, maxDelayMs, polls } = await watched(daemon, () => daemon.ops.coordinator.start('tail').done);
    expect(result.failures).toEqual([refusal(path, /decompresses to more than \d+ bytes after the end of its tar/)]);
    expect(maxDelayMs).toBeLessThan(MAX_LOOP_DELAY_MS);
    for (const p of polls) expect(p).toEqual({ status: 200, body: oldShim });
    expect(await leftovers()).toEqual([]);
  });

  it('a daemon started over a store whose current snapshot holds the bomb listens at once and repairs in the background', async () => {
    await daemon.stop();
    const { logger, lines } = captureLogger('info');
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    daemon = await start(logger);
    let repaired = false;
    void daemon.bootloadersRepaired.then(() => (repaired = true));
    // Listening already, while the repair has not finished: the unpack no longer runs before the ports open.
    await Promise.resolve();
    expect(repaired).toBe(false);
    expect(await getShim(daemon)).toEqual({ status: 200, body: oldShim });
    await daemon.bootloadersRepaired;
    h.disable();
    expect(h.max / 1e6).toBeLessThan(MAX_LOOP_DELAY_MS);
    const line = lines.find((l) => l.code === 'MM_ARCHIVE_REFUSED');
    expect(line).toMatchObject({ level: 'error', product: UEFI, reason: expect.stringMatching(/more than \d+ bytes/) });
    expect(await getShim(daemon)).toEqual({ status: 200, body: oldShim });
    expect(await leftovers()).toEqual([]);
  });

  it('an archive of 300,000 empty entries stops at the entry cap: the files it made are removed', async () => {
    const path = await publishHostile('20260102.0', await manyEmptyEntries(300_000));
    const filesBefore = (await readdir(join(env.dataDir, 'bootloaders.d'), { recursive: true })).length;
    const { result, maxDelayMs, polls } = await watched(daemon, () => daemon.ops.coordinator.start('entries').done);
    expect(result.failures).toEqual([refusal(path, /more than 10000 entries/)]);
    expect(maxDelayMs).toBeLessThan(MAX_LOOP_DELAY_MS);
    for (const p of polls) expect(p).toEqual({ status: 200, body: oldShim });
    expect((await readdir(join(env.dataDir, 'bootloaders.d'), { recursive: true })).length).toBe(filesBefore);
    expect(await leftovers()).toEqual([]);
  });

  it('an archive that takes longer than bootloaders.unpackTimeout is stopped and refused', async () => {
    await daemon.stop();
    const path = await publishHostile('20260103.0', slowArchive());
    const r = await env.sync({ config: env.config([{}], { bootloaders: { unpackTimeout: '50ms' } }) });
    expect(r.failures).toEqual([refusal(path, /took longer than 50 ms/)]);
    expect(await readFile(join(env.dataDir, 'bootloaders/uefi/amd64/bootx64.efi'), 'utf8')).toBe(oldShim);
    expect(await leftovers()).toEqual([]);
    // Within the default budget the same archive is genuine: the daemon's start-up repair unpacks it.
    daemon = await start();
    await daemon.bootloadersRepaired;
    expect(await getShim(daemon)).toEqual({ status: 200, body: 'SLOW' });
  });
});
