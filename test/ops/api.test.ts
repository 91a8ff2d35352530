import { PassThrough } from 'node:stream';
import request from 'supertest';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { triggerRemoteSync } from '../../src/cli/trigger.js';
import type { CommandContext } from '../../src/cli/commands.js';
import type { Config } from '../../src/config/load.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { captureLogger, gateItems, listen, makeOps, opsApp, PATIENT_DOWNLOAD, waitFor } from './helpers.js';

const TOKEN = 'test-token-0123456789-abcdef';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('API: disabled without a token', () => {
  it('answers 404 on every route, with or without credentials', async () => {
    env = await makeEnv();
    const config = env.config();
    const app = opsApp(makeOps({ config: () => config }));
    for (const auth of [undefined, `Bearer ${TOKEN}`, 'Bearer ']) {
      const post = request(app).post('/api/v1/sync');
      const get = request(app).get('/api/v1/status');
      if (auth) {
        post.set('Authorization', auth);
        get.set('Authorization', auth);
      }
      const [p, g] = await Promise.all([post, get]);
      expect(p.status).toBe(404);
      expect(p.body.code).toBe('MM_API_DISABLED');
      expect(g.status).toBe(404);
    }
  });
});

describe('API: with a token', () => {
  it('refuses a missing or wrong token with 401, starts with 202 and refuses a second with 409', async () => {
    env = await makeEnv();
    const { open } = gateItems(env.server, 0);
    const config = env.config(undefined, { api: { token: TOKEN }, ...PATIENT_DOWNLOAD });
    const ops = makeOps({ config: () => config });
    const app = opsApp(ops);
    onTestFinished(open);

    const none = await request(app).post('/api/v1/sync');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    for (const bad of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`, TOKEN]) {
      expect((await request(app).post('/api/v1/sync').set('Authorization', bad)).status).toBe(401);
    }
    expect((await request(app).get('/api/v1/status')).status).toBe(401);
    expect(ops.coordinator.running).toBeUndefined();

    const started = await request(app).post('/api/v1/sync').set('Authorization', `Bearer ${TOKEN}`).send({});
    expect(started.status).toBe(202);
    expect(started.body.id).toMatch(/^sync-/);
    const again = await request(app).post('/api/v1/sync').set('Authorization', `bearer ${TOKEN}`);
    expect(again.status).toBe(409);
    expect(again.body.running).toBe(started.body.id);

    const during = await request(app).get('/api/v1/status').set('Authorization', `Bearer ${TOKEN}`);
    expect(during.status).toBe(200);
    expect(during.body.running.id).toBe(started.body.id);
    expect(during.body.running.progress).toMatchObject({ phase: expect.any(String), bytesDone: expect.any(Number) });

    open();
    await waitFor(() => !ops.coordinator.running, 20_000, 'the sync to end');
    const after = await request(app).get('/api/v1/status').set('Authorization', `Bearer ${TOKEN}`);
    expect(after.body.running).toBeNull();
    expect(after.body.lastSync).toMatchObject({ id: started.body.id, reason: 'api', result: 'ok' });
    expect((await request(app).get('/api/v1/nope').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(404);
    expect((await request(app).get('/api/v1/sync').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(405);
  });

  it('reports the status: sources, products, last sync, store, disk, snapshots', async () => {
    env = await makeEnv();
    const config = env.config(undefined, { api: { token: TOKEN } });
    const ops = makeOps({ config: () => config });
    const app = opsApp(ops);
    const record = await ops.coordinator.start('api').done;
    await ops.storeTotals.refresh();
    const res = await request(app).get('/api/v1/status').set('Authorization', `Bearer ${TOKEN}`);
    expect(res.status).toBe(200);
    const s = res.body;
    expect(s.running).toBeNull();
    expect(s.lastSync).toMatchObject({ id: record.id, result: 'ok', published: true, failures: [] });
    expect(s.history).toHaveLength(1);
    expect(s.current).toBe(record.snapshot);
    expect(s.snapshots).toEqual([expect.objectContaining({ id: record.snapshot, current: true })]);
    expect(s.store.blobs).toBe(record.downloaded.files);
    expect(s.store.bytes).toBe(record.downloaded.bytes);
    expect(s.disk.total).toBeGreaterThan(0);
    const src = s.sources[0];
    expect(src).toMatchObject({ name: 'stable', url: env.server.url, verify: true, check: { state: 'verified' }, maxVersions: 1 });
    const noble = src.products.find((p: { id: string }) => p.id === 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04');
    expect(noble).toMatchObject({ os: 'ubuntu', release: 'noble', arch: 'amd64', versions: [{ version: '20250709', files: expect.any(Number), bytes: expect.any(Number) }] });
    expect(noble.versions[0].bytes).toBeGreaterThan(0);
    expect(s.dataDir).toBe(env.dataDir);
    expect(JSON.stringify(s)).not.toContain(TOKEN);

    // The public subset: no token needed, no history or paths.
    const pub = await request(app).get('/status.json');
    expect(pub.status).toBe(200);
    expect(pub.body.lastSync.id).toBe(record.id);
    expect(pub.body).not.toHaveProperty('history');
    expect(pub.body).not.toHaveProperty('dataDir');
    expect(JSON.stringify(pub.body)).not.toContain(env.dataDir);
  });

  it('follows a token change from a reloaded configuration', async () => {
    env = await makeEnv();
    let config: Config = env.config(undefined, { api: { token: TOKEN } });
    const app = opsApp(makeOps({ config: () => config }));
    expect((await request(app).get('/api/v1/status').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(200);
    config = env.config(undefined, { api: { token: `${TOKEN}-new` } });
    expect((await request(app).get('/api/v1/status').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(401);
    config = env.config();
    expect((await request(app).get('/api/v1/status').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(404);
  });

  it('never writes the token, right or wrong, to the log', async () => {
    env = await makeEnv();
    const { logger, text, lines } = captureLogger('trace');
    const config = env.config(undefined, { api: { token: TOKEN } });
    const ops = makeOps({ config: () => config, logger });
    const app = opsApp(ops);
    const wrong = 'wrong-token-9876543210-zyxw';
    await request(app).post('/api/v1/sync').set('Authorization', `Bearer ${wrong}`);
    const ok = await request(app).post('/api/v1/sync').set('Authorization', `Bearer ${TOKEN}`);
    await waitFor(() => !ops.coordinator.running, 20_000, 'the sync to end');
    await request(app).get('/api/v1/status').set('Authorization', `Bearer ${TOKEN}`);
    const logged = text();
    expect(lines().some((l) => String(l.msg).includes('refused'))).toBe(true);
    expect(logged).toContain(ok.body.id);
    expect(logged).not.toContain(TOKEN);
    expect(logged).not.toContain(wrong);
  });

  it('serves the trigger client of `maas-mirror sync --trigger` end to end', async () => {
    env = await makeEnv();
    const config = env.config(undefined, { api: { token: TOKEN } });
    const ops = makeOps({ config: () => config });
    const http = await listen(opsApp(ops));
    try {
      const out = new PassThrough();
      const err = new PassThrough();
      let printed = '';
      out.on('data', (d: Buffer) => (printed += d.toString()));
      let errors = '';
      err.on('data', (d: Buffer) => (errors += d.toString()));
      const ctx = {
        args: [],
        options: { trigger: `${http.url}/`, token: TOKEN },
        stdout: out as unknown as NodeJS.WriteStream,
        stderr: err as unknown as NodeJS.WriteStream,
      } satisfies CommandContext;
      const code = await triggerRemoteSync(ctx);
      expect(errors).toBe('');
      expect(code).toBe(0);
      expect(printed).toMatch(/^sync sync-\S+: ok\n$/);
      expect(printed).toContain(ops.coordinator.lastSync!.id);

      const refused = await triggerRemoteSync({ ...ctx, options: { ...ctx.options, token: 'x'.repeat(20) } });
      expect(refused).toBe(2);
    } finally {
      await http.close();
    }
  });
});
