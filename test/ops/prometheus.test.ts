import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { freePort, listen, makeOps, opsApp, waitFor } from './helpers.js';

let env: Env | undefined;
let prom: ChildProcess | undefined;
let promDir: string | undefined;
let stopHttp: (() => Promise<void>) | undefined;
afterEach(async () => {
  if (prom && prom.exitCode === null) {
    prom.kill('SIGTERM');
    await once(prom, 'exit');
  }
  prom = undefined;
  await stopHttp?.();
  if (promDir) await rm(promDir, { recursive: true, force: true });
  await env?.close();
  env = undefined;
});

interface QueryResult {
  status: string;
  data: { result: { metric: Record<string, string>; value: [number, string] }[] };
}

describe('a real Prometheus', () => {
  it('scrapes /metrics and answers queries on maas_mirror_build_info', async () => {
    env = await makeEnv();
    const config = env.config();
    const ops = makeOps({ config: () => config, version: '0.0.0-test', defaultMetrics: true });
    ops.metrics.initSources(['stable']);
    const http = await listen(opsApp(ops));
    stopHttp = http.close;

    promDir = await mkdtemp(join(tmpdir(), 'mm-prom-'));
    const promPort = await freePort();
    await writeFile(
      join(promDir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: maas-mirror',
        '    static_configs:',
        `      - targets: ["127.0.0.1:${http.port}"]`,
        '',
      ].join('\n'),
    );
    let output = '';
    prom = spawn(
      'prometheus',
      [
        `--config.file=${join(promDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prom.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    prom.stderr!.on('data', (d: Buffer) => (output += d.toString()));

    const query = async (q: string): Promise<QueryResult | undefined> => {
      if (prom?.exitCode !== null) throw new Error(`prometheus exited: ${output}`);
      try {
        const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
        return res.ok ? ((await res.json()) as QueryResult) : undefined;
      } catch {
        return undefined; // not listening yet
      }
    };
    const found = await waitFor(
      async () => {
        const r = await query('maas_mirror_build_info');
        return r && r.data.result.length > 0 ? r : undefined;
      },
      30_000,
      'Prometheus to scrape us',
    );
    expect(found.status).toBe('success');
    expect(found.data.result[0]!.metric).toMatchObject({ __name__: 'maas_mirror_build_info', job: 'maas-mirror', version: '0.0.0-test' });
    expect(found.data.result[0]!.value[1]).toBe('1');

    const up = await query('up{job="maas-mirror"}');
    expect(up?.data.result[0]?.value[1]).toBe('1');
    const runs = await query('maas_mirror_sync_runs_total{source="stable",result="ok"}');
    expect(runs?.data.result[0]?.value[1]).toBe('0');
  });
});
