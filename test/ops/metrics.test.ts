import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpApp } from '../../src/http/index.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics, httpMetricsMiddleware, observeTftp } from '../../src/ops/metrics.js';
import { BlobStore } from '../../src/store/blobs.js';
import { Layout } from '../../src/store/layout.js';
import { tftpGet, TftpServer, openFromDirectory } from '../../src/tftp/index.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { listen, makeOps, opsApp, sample } from './helpers.js';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

const EXPECTED_NAMES = [
  'maas_mirror_sync_runs_total',
  'maas_mirror_sync_duration_seconds',
  'maas_mirror_last_successful_sync_timestamp_seconds',
  'maas_mirror_upstream_downloaded_bytes_total',
  'maas_mirror_upstream_retries_total',
  'maas_mirror_signature_failures_total',
  'maas_mirror_checksum_failures_total',
  'maas_mirror_store_bytes',
  'maas_mirror_store_blobs',
  'maas_mirror_gc_reclaimed_bytes_total',
  'maas_mirror_snapshot_age_seconds',
  'maas_mirror_http_request_duration_seconds',
  'maas_mirror_http_sent_bytes_total',
  'maas_mirror_tftp_transfers_total',
  'maas_mirror_tftp_sent_bytes_total',
  'maas_mirror_tftp_active_transfers',
  'maas_mirror_build_info',
];

function families(text: string): string[] {
  return [...text.matchAll(/^# TYPE (maas_mirror_\S+) /gm)].map((m) => m[1]!).sort();
}

describe('metrics', () => {
  it('exports exactly the documented families, plus Node process metrics', async () => {
    const m = createMetrics({ version: '9.9.9' });
    const text = await m.registry.metrics();
    expect(families(text)).toEqual([...EXPECTED_NAMES].sort());
    expect(text).toContain('process_cpu_seconds_total');
    expect(text).toContain('nodejs_heap_size_used_bytes');
    expect(sample(text, 'maas_mirror_build_info', { version: '9.9.9' })).toBe(1);
    // Unknown before the first measurement: absent, not a misleading 0.
    expect(sample(text, 'maas_mirror_store_bytes')).toBeUndefined();
    expect(sample(text, 'maas_mirror_snapshot_age_seconds')).toBeUndefined();
  });

  it('counts a real sync: downloaded bytes, runs, last success, store totals, snapshot age', async () => {
    env = await makeEnv();
    const config = env.config();
    const ops = makeOps({ config: () => config, version: '1.2.3' });
    ops.metrics.initSources(['stable']);
    const before = Date.now();
    const record = await ops.coordinator.start('start').done;
    expect(record.result).toBe('ok');
    const res = await request(opsApp(ops)).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = res.text;

    const itemBytes = env.server.log
      .filter((r) => r.status === 200 && !r.path.startsWith('streams/'))
      .reduce((n, r) => n + (env!.upstream.files().get(r.path)?.size ?? 0), 0);
    const stored = await new BlobStore(new Layout(env.dataDir)).totals();
    expect(record.downloaded.bytes).toBeGreaterThan(0);
    expect(sample(text, 'maas_mirror_upstream_downloaded_bytes_total', { source: 'stable' })).toBe(record.downloaded.bytes);
    expect(record.downloaded.bytes).toBe(itemBytes);
    expect(sample(text, 'maas_mirror_sync_runs_total', { source: 'stable', result: 'ok' })).toBe(1);
    for (const r of ['partial', 'failed', 'aborted', 'locked']) {
      expect(sample(text, 'maas_mirror_sync_runs_total', { source: 'stable', result: r })).toBe(0);
    }
    expect(sample(text, 'maas_mirror_sync_duration_seconds_count', { source: 'stable' })).toBe(1);
    const last = sample(text, 'maas_mirror_last_successful_sync_timestamp_seconds', { source: 'stable' })!;
    expect(last * 1000).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(last * 1000).toBeLessThanOrEqual(Date.now());
    expect(sample(text, 'maas_mirror_store_bytes')).toBe(stored.bytes);
    expect(sample(text, 'maas_mirror_store_blobs')).toBe(stored.blobs);
    const age = sample(text, 'maas_mirror_snapshot_age_seconds')!;
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(60);
    expect(sample(text, 'maas_mirror_signature_failures_total', { source: 'stable' })).toBe(0);
    expect(sample(text, 'maas_mirror_build_info', { version: '1.2.3' })).toBe(1);
  });

  it('counts signature failures and a failed run', async () => {
    env = await makeEnv();
    const { makeKey } = await import('../helpers/env.js');
    const other = await makeKey(env.dir, 'other');
    const config = env.config([{ keyring: other.keyring }]);
    const ops = makeOps({ config: () => config });
    const record = await ops.coordinator.start('start').done;
    expect(record.result).toBe('failed');
    const text = await ops.metrics.registry.metrics();
    expect(sample(text, 'maas_mirror_signature_failures_total', { source: 'stable' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'maas_mirror_sync_runs_total', { source: 'stable', result: 'failed' })).toBe(1);
    expect(sample(text, 'maas_mirror_last_successful_sync_timestamp_seconds', { source: 'stable' })).toBeUndefined();
  });

  it('measures HTTP requests by route class, through the real HTTP app', async () => {
    env = await makeEnv();
    const config = env.config();
    const ops = makeOps({ config: () => config });
    await ops.coordinator.start('start').done;
    const app = createHttpApp({ config, layout: new Layout(env.dataDir), logger: silentLogger(), routes: (a) => ops.routes(a) });
    const index = await request(app).get(`${config.http.prefix}streams/v1/index.json`);
    expect(index.status).toBe(200);
    const keyring = await request(app).get('/keyring.gpg').buffer(true);
    expect(keyring.status).toBe(200);
    await request(app).get('/no/such/thing');
    await request(app).head(`${config.http.prefix}streams/v1/index.json`);
    const text = (await request(app).get('/metrics')).text;
    expect(sample(text, 'maas_mirror_http_request_duration_seconds_count', { route: 'tree', method: 'GET', status: '200' })).toBe(1);
    expect(sample(text, 'maas_mirror_http_request_duration_seconds_count', { route: 'tree', method: 'HEAD', status: '200' })).toBe(1);
    expect(sample(text, 'maas_mirror_http_request_duration_seconds_count', { route: 'keyring', method: 'GET', status: '200' })).toBe(1);
    expect(sample(text, 'maas_mirror_http_request_duration_seconds_count', { route: 'other', method: 'GET', status: '404' })).toBe(1);
    expect(sample(text, 'maas_mirror_http_sent_bytes_total', { route: 'tree' })).toBe(Number(index.headers['content-length']));
    expect(sample(text, 'maas_mirror_http_sent_bytes_total', { route: 'keyring' })).toBe(Number(keyring.headers['content-length']));
    expect(text).not.toContain('no/such/thing');
  });

  it('counts streamed bytes as they are written, once per response even when installed twice', async () => {
    const m = createMetrics({ defaultMetrics: false });
    const observe = httpMetricsMiddleware(m, { prefix: '/tree/' });
    const chunk = Buffer.alloc(64 * 1024, 1);
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      observe(req, res);
      observe(req, res);
      res.setHeader('Content-Length', chunk.length * 10 + 3);
      void pipeline(Readable.from(Array.from({ length: 10 }, () => chunk)), res, { end: false }).then(() => res.end('end', 'utf8'));
    };
    const res = await request(handler).get('/tree/streams/v1/big.json').buffer(true).parse((r, cb) => {
      let n = 0;
      r.on('data', (d: Buffer) => (n += d.length));
      r.on('end', () => cb(null, n));
    });
    expect(res.body).toBe(chunk.length * 10 + 3);
    const text = await m.registry.metrics();
    expect(sample(text, 'maas_mirror_http_sent_bytes_total', { route: 'tree' })).toBe(chunk.length * 10 + 3);
    expect(sample(text, 'maas_mirror_http_request_duration_seconds_count', { route: 'tree', method: 'GET', status: '200' })).toBe(1);
  });

  it('counts TFTP transfers of the real TFTP server, and bounds unknown results', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mm-ops-tftp-'));
    const m = createMetrics({ defaultMetrics: false });
    const server = new TftpServer({ listen: [{ host: '127.0.0.1', port: 0 }], open: openFromDirectory(dir) });
    try {
      await writeFile(join(dir, 'pxelinux.0'), Buffer.alloc(20_000, 7));
      const [bound] = await server.start();
      const stop = observeTftp(m, server);
      const got = await tftpGet({ host: '127.0.0.1', port: bound!.port, file: 'pxelinux.0', blksize: 1024 });
      expect(got.bytes).toBe(20_000);
      await expect(tftpGet({ host: '127.0.0.1', port: bound!.port, file: 'missing', retries: 1, timeoutMs: 500 })).rejects.toThrow();
      const text = await m.registry.metrics();
      expect(sample(text, 'maas_mirror_tftp_transfers_total', { result: 'ok' })).toBe(1);
      expect(sample(text, 'maas_mirror_tftp_transfers_total', { result: 'not_found' })).toBe(1);
      expect(sample(text, 'maas_mirror_tftp_sent_bytes_total')).toBe(20_000);
      expect(sample(text, 'maas_mirror_tftp_active_transfers')).toBe(0);
      stop();
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }

    // Duck-typed: any emitter of transferEnd works; a result outside the known set is "other".
    const fake = Object.assign(new EventEmitter(), { activeTransfers: 3 });
    const stop = observeTftp(m, fake);
    fake.emit('transferEnd', { result: '/etc/passwd', bytes: 5 });
    let text = await m.registry.metrics();
    expect(sample(text, 'maas_mirror_tftp_transfers_total', { result: 'other' })).toBe(1);
    expect(sample(text, 'maas_mirror_tftp_active_transfers')).toBe(3);
    expect(text).not.toContain('passwd');
    stop();
    fake.emit('transferEnd', { result: 'ok', bytes: 5 });
    text = await m.registry.metrics();
    expect(sample(text, 'maas_mirror_tftp_active_transfers')).toBe(0);
    expect(sample(text, 'maas_mirror_tftp_transfers_total', { result: 'ok' })).toBe(1);
  });

  it('passes promtool check metrics', async () => {
    env = await makeEnv();
    const config = env.config();
    const ops = makeOps({ config: () => config, defaultMetrics: true });
    ops.metrics.initSources(['stable']);
    await ops.coordinator.start('start').done;
    const http = await listen(opsApp(ops));
    let text: string;
    try {
      await fetch(`${http.url}/status.json`);
      text = await (await fetch(`${http.url}/metrics`)).text();
    } finally {
      await http.close();
    }
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      child.stdin!.end(text);
    });
    expect(stdout + stderr).toBe('');
    expect(code).toBe(0);
  });
});
