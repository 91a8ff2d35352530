import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, type Env } from '../helpers/env.js';
import { makeOps, opsApp } from './helpers.js';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe('/livez and /readyz', () => {
  it('is live at once, ready only once a snapshot is published, and not ready while draining', async () => {
    env = await makeEnv();
    const config = env.config();
    const ops = makeOps({ config: () => config });
    const app = opsApp(ops);

    expect((await request(app).get('/livez')).status).toBe(200);
    const before = await request(app).get('/readyz');
    expect(before.status).toBe(503);
    expect(before.body).toMatchObject({ ready: false, snapshot: null, draining: false });

    const record = await ops.coordinator.start('start').done;
    expect(record.result).toBe('ok');
    const after = await request(app).get('/readyz');
    expect(after.status).toBe(200);
    expect(after.body).toEqual({ ready: true, draining: false, dataDirWritable: true, snapshot: record.snapshot });

    ops.setDraining();
    const draining = await request(app).get('/readyz');
    expect(draining.status).toBe(503);
    expect(draining.body).toMatchObject({ ready: false, draining: true, snapshot: record.snapshot });
    // Still alive while draining: the orchestrator must not kill it before it has drained.
    expect((await request(app).get('/livez')).status).toBe(200);
  });

  it('is not ready when the dataDir cannot be written', async () => {
    env = await makeEnv();
    // A dataDir that is a path below a regular file can never be created or written.
    const config = { ...env.config(), dataDir: `${env.key.keyring}/data` };
    const ops = makeOps({ config: () => config });
    const res = await request(opsApp(ops)).get('/readyz');
    expect(res.status).toBe(503);
    expect(res.body.dataDirWritable).toBe(false);
  });
});
