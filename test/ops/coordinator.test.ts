import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/ops/metrics.js';
import { SyncCoordinator, SyncRunningError, ShuttingDownError } from '../../src/ops/coordinator.js';
import { Layout } from '../../src/store/layout.js';
import { acquireLock } from '../../src/store/lock.js';
import { currentSnapshotId } from '../../src/store/snapshots.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { captureLogger, gateItems, PATIENT_DOWNLOAD, sample, waitFor } from './helpers.js';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('SyncCoordinator', () => {
  it('runs one sync at a time and records it', async () => {
    env = await makeEnv();
    const published: string[] = [];
    const config = env.config();
    const c = new SyncCoordinator({ config: () => config, logger: captureLogger().logger, onPublished: (id) => void published.push(id), syncOptions: { retryBaseMs: 5 } });
    const { id, done } = c.start('api');
    expect(c.running?.id).toBe(id);
    expect(c.running?.reason).toBe('api');
    expect(() => c.start('schedule')).toThrow(SyncRunningError);
    try {
      c.start('schedule');
    } catch (err) {
      expect((err as SyncRunningError).running).toBe(id);
    }
    const record = await done;
    expect(record).toMatchObject({ id, reason: 'api', result: 'ok', published: true, failures: [], error: null });
    expect(record.snapshot).toBe(await currentSnapshotId(new Layout(env.dataDir)));
    expect(published).toEqual([record.snapshot]);
    expect(record.downloaded.files).toBeGreaterThan(0);
    expect(c.running).toBeUndefined();
    expect(c.lastSync).toBe(record);
    expect(c.history).toEqual([record]);
  });

  it('records a sync that meets the lock of a CLI sync as skipped, at info, not as a failure', async () => {
    env = await makeEnv();
    const { logger, lines } = captureLogger();
    const metrics = createMetrics({ defaultMetrics: false });
    const config = env.config();
    metrics.initSources(['stable']);
    const c = new SyncCoordinator({ config: () => config, logger, metrics, syncOptions: { retryBaseMs: 5 } });
    // What `maas-mirror sync` from cron holds while it runs.
    const cron = await acquireLock(new Layout(env.dataDir).lockFile, 'sync (cron)');
    let record;
    try {
      record = await c.start('schedule').done;
    } finally {
      await cron.release();
    }
    expect(record.result).toBe('locked');
    expect(record.failures).toEqual([]);
    expect(record.error?.code).toBe('MM_LOCKED');
    expect(record.error?.message).toContain('sync (cron)');
    const skipped = lines().filter((l) => String(l.msg).includes('skipped'));
    expect(skipped).toHaveLength(1);
    expect(skipped[0]!.level).toBe('info');
    expect(lines().filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
    const text = await metrics.registry.metrics();
    expect(sample(text, 'maas_mirror_sync_runs_total', { source: 'stable', result: 'locked' })).toBe(1);
    expect(sample(text, 'maas_mirror_sync_runs_total', { source: 'stable', result: 'failed' })).toBe(0);

    // The lock is free again: the next one runs.
    const next = await c.start('schedule').done;
    expect(next.result).toBe('ok');
    expect(c.history.map((r) => r.result)).toEqual(['ok', 'locked']);
  });

  it('makes a concurrent CLI sync meet the daemon\'s lock while the daemon syncs', async () => {
    env = await makeEnv();
    const { open } = gateItems(env.server, 1);
    const config = env.config(undefined, PATIENT_DOWNLOAD);
    const c = new SyncCoordinator({ config: () => config, logger: captureLogger().logger, syncOptions: { retryBaseMs: 5 } });
    const { done } = c.start('schedule');
    try {
      await waitFor(() => c.running?.progress.filesDone === 1, 10_000, 'the first download');
      await expect(acquireLock(new Layout(env.dataDir).lockFile, 'sync (cron)')).rejects.toMatchObject({ code: 'MM_LOCKED' });
    } finally {
      open();
    }
    expect((await done).result).toBe('ok');
    // Released at the end: the CLI gets it now.
    await (await acquireLock(new Layout(env.dataDir).lockFile, 'sync (cron)')).release();
  });

  it('aborts a running sync, keeping its partial downloads for the next one', async () => {
    env = await makeEnv();
    env.server.throttle = 100_000;
    const config = env.config();
    const c = new SyncCoordinator({ config: () => config, logger: captureLogger().logger, syncOptions: { retryBaseMs: 5 } });
    const { done } = c.start('start');
    await waitFor(() => (c.running?.progress.bytesDone ?? 0) > 50_000, 15_000, 'some bytes');
    const aborted = await c.abort();
    expect(aborted?.result).toBe('aborted');
    expect(await done).toBe(aborted);
    expect(aborted?.published).toBe(false);
    const partials = await readdir(new Layout(env.dataDir).partialDir);
    expect(partials.length).toBeGreaterThan(0);

    env.server.throttle = 0;
    const again = await c.start('start').done;
    expect(again.result).toBe('ok');
    // Resumed with Range, not fetched again from zero.
    expect(env.server.log.some((r) => r.status === 206)).toBe(true);
  });

  it('uses the configuration the getter returns at each start (SIGHUP)', async () => {
    env = await makeEnv();
    const metrics = createMetrics({ defaultMetrics: false });
    let config = env.config([{ name: 'first' }]);
    const c = new SyncCoordinator({ config: () => config, logger: captureLogger().logger, metrics, syncOptions: { retryBaseMs: 5 } });
    expect((await c.start('start').done).result).toBe('ok');
    config = env.config([{ name: 'second', filters: [['arch=amd64']] }]);
    const second = await c.start('schedule').done;
    expect(second.result).toBe('ok');
    const text = await metrics.registry.metrics();
    expect(sample(text, 'maas_mirror_sync_runs_total', { source: 'first', result: 'ok' })).toBe(1);
    expect(sample(text, 'maas_mirror_sync_runs_total', { source: 'second', result: 'ok' })).toBe(1);
  });

  it('keeps a bounded history, newest first, and starts nothing after close()', async () => {
    env = await makeEnv();
    const config = env.config();
    const c = new SyncCoordinator({ config: () => config, logger: captureLogger().logger, historySize: 3 });
    const lock = await acquireLock(join(env.dataDir, 'lock'), 'gc');
    const ids: string[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const s = c.start('api');
        ids.push(s.id);
        await s.done;
      }
    } finally {
      await lock.release();
    }
    expect(c.history.map((r) => r.id)).toEqual(ids.slice(2).reverse());
    await c.close();
    expect(() => c.start('api')).toThrow(ShuttingDownError);
  });
});
