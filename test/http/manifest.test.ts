import { readlink, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { startHttpServer, type HttpServerHandle } from '../../src/http/index.js';
import { Layout } from '../../src/store/layout.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { captureLogger } from './fixture.js';

const PREFIX = '/maas/images/ephemeral-v3/stable/';

let env: Env | undefined;
let http: HttpServerHandle | undefined;
afterEach(async () => {
  await http?.close(0);
  await env?.close();
  env = http = undefined;
});

describe('an unreadable manifest', () => {
  it('is a server fault (500 MM_MANIFEST_UNREADABLE), not a missing file, and its body names no file of the mirror', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json'] });
    const config = env.config();
    expect((await env.sync({ config })).result).toBe('ok');
    const layout = new Layout(env.dataDir);
    const id = basename(await readlink(layout.current));
    await writeFile(layout.manifest(id), '{ not json');
    const log = captureLogger('info');
    http = await startHttpServer({ config, layout, logger: log.logger, listen: [{ host: '127.0.0.1', port: 0 }] });
    const res = await request(`http://127.0.0.1:${http.addresses[0]!.port}${PREFIX}streams/v1/index.json`);
    const text = await res.body.text();
    expect(res.statusCode).toBe(500);
    expect(JSON.parse(text)).toMatchObject({ code: 'MM_MANIFEST_UNREADABLE' });
    expect(text).not.toContain(env.dataDir);
    // The operator finds the details in the log.
    expect(log.lines.some((l) => l.msg === 'request failed')).toBe(true);
  });
});
