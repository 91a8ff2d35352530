import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { sha256, sleep, waitFor } from './helpers.js';
import type { LoadDone, LoadPlan } from './load-client.js';

/**
 * Load while the ground moves: 200 concurrent HTTP downloads and 50 TFTP
 * transfers, without pause, while a sync publishes a new snapshot and
 * garbage collection deletes the old one (keepSnapshots: 1). Not one request
 * may fail, every body must hash right, and the daemon's memory must stay
 * bounded. The clients run in a process of their own (load-client.ts), as
 * real clients do.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZES: Record<string, number> = {
  squashfs: 3 * MiB,
  'boot-initrd': 1 * MiB,
  'boot-kernel': 400 * KiB,
  'root-tgz': 2 * MiB,
  manifest: 2 * KiB,
};
const PREFIX = '/maas/images/ephemeral-v3/stable/';
const CHANGED = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
const HTTP_WORKERS = 200;
const TFTP_WORKERS = 50;
const RSS_LIMIT = 600 * MiB;
const CLIENT = join(import.meta.dirname, 'load-client.ts');

let env: Env | undefined;
let daemon: Daemon | undefined;
let client: ChildProcess | undefined;
afterAll(async () => {
  client?.kill('SIGKILL');
  await daemon?.stop();
  await env?.close();
});

describe('load during publish and gc', () => {
  it('serves 200 concurrent HTTP downloads and 50 TFTP transfers without one failure while a snapshot is published and the old one collected', async () => {
    env = await makeEnv({ sizeOf: (ftype) => SIZES[ftype] ?? 16 * KiB });
    const config = env.config([{}], {
      schedule: { onStart: false, interval: '1h', jitter: '0s' },
      publish: { keepSnapshots: 1 },
    });
    daemon = await startDaemon({
      config,
      logger: silentLogger(),
      httpListen: [{ host: '127.0.0.1', port: 0 }],
      tftpListen: [{ host: '127.0.0.1', port: 0 }],
      retryBaseMs: 5,
      drainMs: 2000,
    });
    const coordinator = daemon.ops.coordinator;
    const first = await coordinator.start('initial').done;
    expect(first.result).toBe('ok');
    const base = `http://127.0.0.1:${daemon.http.addresses[0]!.port}`;
    const oldId = basename(await readlink(join(env.dataDir, 'current')));
    const oldIndex = await readFile(join(env.dataDir, 'current', 'streams/v1/index.json'));

    // What stays the same across the publish: every item of the products not changing.
    const stable: [string, { sha256: string; size: number }][] = [];
    for (const doc of env.upstream.products.values()) {
      for (const [pid, p] of Object.entries(doc.products)) {
        if (pid === CHANGED) continue;
        const newest = Object.keys(p.versions).sort().at(-1)!;
        for (const i of Object.values(p.versions[newest]!.items)) if (i.size >= 300 * KiB) stable.push([i.path, { sha256: i.sha256, size: i.size }]);
      }
    }
    expect(stable.length).toBeGreaterThanOrEqual(8);
    const efi = sha256(Buffer.from(await (await request(`${base}/bootx64.efi`)).body.arrayBuffer()));
    /** url → the sha256 values its body may have */
    const http: { url: string; ok: Set<string> }[] = [];
    for (const [path, f] of stable) {
      http.push({ url: `${base}${PREFIX}${path}`, ok: new Set([f.sha256]) });
      http.push({ url: `${base}/images/${f.sha256.slice(0, 16)}/x`, ok: new Set([f.sha256]) });
    }
    http.push({ url: `${base}/bootx64.efi`, ok: new Set([efi]) });
    const index = { url: `${base}${PREFIX}streams/v1/index.json`, ok: new Set([sha256(oldIndex)]) };
    http.push(index);
    const tftp = [
      ...stable.filter(([, f]) => f.size <= 1 * MiB).map(([path, f]) => ({ name: path, ok: f.sha256 })),
      { name: 'bootx64.efi', ok: efi },
    ];

    // The upstream publishes a new version, fetched slowly enough to overlap the load.
    env.upstream.addVersion(CHANGED, '20260101');
    await env.upstream.write();
    env.server.throttle = 4 * MiB;

    const plan: LoadPlan = {
      http: http.map((h) => h.url),
      tftp: tftp.map((t) => t.name),
      tftpHost: daemon.tftpAddresses[0]!.host,
      tftpPort: daemon.tftpAddresses[0]!.port,
      httpWorkers: HTTP_WORKERS,
      tftpWorkers: TFTP_WORKERS,
      maxPerHttpWorker: 40,
      maxPerTftpWorker: 20,
    };
    client = fork(CLIENT, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let progress = 0;
    let result: LoadDone[] | undefined;
    let clientError: string | undefined;
    client.on('message', (m: { type: string; done?: number | LoadDone[]; message?: string }) => {
      if (m.type === 'progress') progress = m.done as number;
      if (m.type === 'result') result = m.done as LoadDone[];
      if (m.type === 'error') clientError = m.message;
    });
    let peakRss = process.memoryUsage().rss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
    const t0 = Date.now();
    client.send({ type: 'start', plan });

    // Under full load first, then the sync.
    await waitFor(() => progress >= HTTP_WORKERS, 20_000, 'the load to get going');
    const { done: synced } = coordinator.start('test');
    let switchedAt: number | undefined;
    const watcher = (async () => {
      while (switchedAt === undefined && Date.now() - t0 < 50_000) {
        if (basename(await readlink(join(env!.dataDir, 'current'))) !== oldId) switchedAt = Date.now();
        else await sleep(2);
      }
    })();
    const record = await synced;
    const syncedAt = Date.now();
    await sleep(300); // the load goes on after gc
    const exited = once(client, 'exit');
    client.send({ type: 'stop' });
    await waitFor(() => result !== undefined || clientError !== undefined, 20_000, 'the load client to finish');
    await exited;
    client = undefined;
    await watcher;
    clearInterval(sampler);
    expect(clientError).toBeUndefined();
    const done = result!;

    expect(record.result, JSON.stringify(record.failures)).toBe('ok');
    expect(record.published).toBe(true);
    // gc ran: the old snapshot is gone, from under the requests.
    expect(await readdir(join(env.dataDir, 'snapshots'))).toEqual([record.snapshot]);
    expect(switchedAt).toBeDefined();
    // The index may be the old one or the new one, never a mix.
    index.ok.add(sha256(await readFile(join(env.dataDir, 'current', 'streams/v1/index.json'))));

    const failures = done
      .filter((d) =>
        d.error !== undefined ||
        (d.kind === 'http' ? d.status !== 200 || !http[d.target]!.ok.has(d.sha256!) : d.sha256 !== tftp[d.target]!.ok),
      )
      .map((d) => `${d.kind} ${d.kind === 'http' ? http[d.target]!.url : tftp[d.target]!.name}: ${d.error ?? `${d.status ?? ''} sha256 ${d.sha256}`}`);
    const httpDone = done.filter((d) => d.kind === 'http');
    const tftpDone = done.filter((d) => d.kind === 'tftp');
    const spanning = (list: LoadDone[]) => list.filter((d) => d.start < switchedAt! && d.end > switchedAt!).length;
    const latencies = httpDone.map((d) => d.end - d.start).sort((a, b) => a - b);
    console.log(
      `load: ${httpDone.length} HTTP downloads (${httpDone.filter((d) => http[d.target] === index).length} of the index), ` +
        `${tftpDone.length} TFTP transfers, ${(done.reduce((s, d) => s + d.bytes, 0) / 1e9).toFixed(2)} GB in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
        `the sync took ${syncedAt - t0} ms under load; in flight at the switch: ${spanning(httpDone)} HTTP, ${spanning(tftpDone)} TFTP; ` +
        `HTTP p50 ${latencies[Math.floor(latencies.length / 2)]} ms, p99 ${latencies[Math.floor(latencies.length * 0.99)]} ms; ` +
        `daemon peak RSS ${(peakRss / MiB).toFixed(0)} MiB; failures ${failures.length}`,
    );
    expect(failures.slice(0, 10)).toEqual([]);
    expect(httpDone.filter((d) => http[d.target] === index).length).toBeGreaterThan(0);
    expect(httpDone.length).toBeGreaterThanOrEqual(HTTP_WORKERS);
    expect(tftpDone.length).toBeGreaterThanOrEqual(TFTP_WORKERS);
    // The load really overlapped the switch.
    expect(spanning(httpDone)).toBeGreaterThan(0);
    expect(spanning(tftpDone)).toBeGreaterThan(0);
    expect(peakRss).toBeLessThan(RSS_LIMIT);
  });
});
