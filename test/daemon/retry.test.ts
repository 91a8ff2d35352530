import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { BIN, writeJsonConfig } from '../faults/helpers.js';

/**
 * The real daemon (`maas-mirror serve`) with its upstream failing: the failed
 * sync is retried after schedule.retry, then twice that, not after the 6 h
 * interval; the log blames the source, never the filters (no MM_MAAS_RULES)
 * and never speaks of a current snapshot there is not. Once upstream is back,
 * the retry publishes and the schedule returns to the interval.
 */

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

interface LogLine {
  msg: string;
  code?: string;
  nextRunAt?: string;
  delayMs?: number;
}

describe('serve: a failed sync', () => {
  it('is retried with backoff, and the log names the real cause', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    let down = true;
    env.server.intercept = async (_req, res, path) => {
      if (!down) return false;
      res.statusCode = 503;
      res.end(`unavailable: ${path}`);
      return true;
    };
    const file = await writeJsonConfig(join(env.dir, 'serve.yaml'), {
      dataDir: env.dataDir,
      sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }],
      download: { retries: 0, connectTimeout: '2s', idleTimeout: '5s' },
      http: { listen: '127.0.0.1:0' },
      tftp: { enabled: false },
      schedule: { onStart: true, interval: '6h', jitter: '0s', retry: '1s' },
    });
    const p = spawn(process.execPath, [BIN, 'serve', '--config', file], { env: { ...process.env, LOG_LEVEL: 'info', MAAS_MIRROR_FROM_SOURCE: '1' } });
    onTestFinished(async () => {
      if (p.exitCode === null) {
        p.kill('SIGTERM');
        await once(p, 'exit');
      }
    });
    let raw = '';
    p.stdout.on('data', (d) => (raw += d));
    p.stderr.on('data', (d) => (raw += d));
    const lines = () =>
      raw
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LogLine);
    const waitFor = async (what: string, pred: (ls: LogLine[]) => boolean, ms = 30_000) => {
      const deadline = Date.now() + ms;
      while (!pred(lines())) {
        if (Date.now() > deadline || p.exitCode !== null) throw new Error(`no ${what} in the log:\n${raw}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const retries = () => lines().filter((l) => l.msg.startsWith('the sync failed; retrying in'));

    await waitFor('second retry', () => retries().length >= 2);
    const [first, second] = retries();
    expect(first!.msg).toBe('the sync failed; retrying in 1 s (failed 1 time in a row)');
    expect(first!.delayMs).toBe(1000);
    expect(second!.msg).toBe('the sync failed; retrying in 2 s (failed 2 times in a row)');
    expect(second!.delayMs).toBe(2000);
    // The cause is the source; no MAAS-rules error about filters, no snapshot that does not exist.
    const failed = lines().filter((l) => l.code === 'MM_UPSTREAM_HTTP');
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(failed[0]!.msg).toMatch(/^source stable rejected: .*answered HTTP 503/);
    expect(raw).not.toContain('MM_MAAS_RULES');
    expect(raw).not.toContain('the current snapshot stays');

    // Upstream back: the next retry publishes, and the schedule returns to the interval.
    down = false;
    await waitFor('a published snapshot', (ls) => ls.some((l) => l.msg === 'published a new snapshot'), 60_000);
    await waitFor('the end of the sync', (ls) => ls.some((l) => /^sync \S+ ended: ok$/.test(l.msg)));
    p.kill('SIGTERM');
    const [code] = await once(p, 'exit');
    expect(code).toBe(0);
    // No retry was scheduled after the success.
    const okAt = lines().findIndex((l) => /^sync \S+ ended: ok$/.test(l.msg));
    expect(lines().slice(okAt).some((l) => l.msg.startsWith('the sync failed'))).toBe(false);
  });
});
