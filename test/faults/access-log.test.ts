import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { captureLogger } from '../ops/helpers.js';
import { waitFor } from './helpers.js';

/**
 * The log is read by machines: every line is JSON with each key once, and
 * the access log says what was asked (the full path, not express's rewritten
 * one; never the query, which may carry anything a client typed) and how many
 * body bytes went out, for every route.
 */

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const TOKEN = 'access-log-token-0123456789';

let env: Env | undefined;
let daemon: Daemon | undefined;
afterAll(async () => {
  await daemon?.stop();
  await env?.close();
});

/** Keys of one JSON object line, in order, duplicates kept (JSON.parse would hide them). */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      const end = line.indexOf('"', i + 1) === -1 ? line.length : findStringEnd(line, i);
      if (depth === 1 && line[end + 1] === ':') keys.push(JSON.parse(line.slice(i, end + 1)) as string);
      i = end;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}

function findStringEnd(line: string, start: number): number {
  for (let i = start + 1; i < line.length; i++) {
    if (line[i] === '\\') i++;
    else if (line[i] === '"') return i;
  }
  return line.length;
}

describe('log lines', () => {
  it('carry each key once, and the access log has full paths, real byte counts and no query strings', async () => {
    env = await makeEnv({ samples: ['stable-v3-download.json', 'stable-bootloader-download.json'] });
    const log = captureLogger('info');
    daemon = await startDaemon({
      config: env.config([{}], { schedule: { onStart: false, interval: '1h', jitter: '0s' }, tftp: { enabled: false }, api: { token: TOKEN } }),
      logger: log.logger,
      httpListen: [{ host: '127.0.0.1', port: 0 }],
      retryBaseMs: 5,
      drainMs: 200,
    });
    expect((await daemon.ops.coordinator.start('initial').done).result).toBe('ok');
    const { host, port } = daemon.http.addresses[0]!;
    const base = `http://${host}:${port}`;

    const asked = [
      { path: '/api/v1/status', headers: { authorization: `Bearer ${TOKEN}` } },
      { path: '/api/v1/nothing', headers: { authorization: `Bearer ${TOKEN}` } },
      { path: '/status.json', headers: {} },
      { path: '/', headers: {} },
      { path: '/metrics', headers: {} },
      { path: `${PREFIX}streams/v1/index.json`, headers: {} },
    ];
    const sent = new Map<string, number>();
    for (const a of asked) {
      const res = await request(`${base}${a.path}?token=secret-in-query&x=1`, { headers: a.headers });
      const body = Buffer.from(await res.body.arrayBuffer());
      sent.set(a.path, body.length);
    }

    await waitFor(() => log.lines().filter((l) => l.msg === 'request').length >= asked.length, 5000, 'the access log lines');
    const access = log.lines().filter((l) => l.msg === 'request');
    for (const a of asked) {
      const line = access.find((l) => l.path === a.path);
      expect(line, `an access log line with path ${a.path}`).toBeDefined();
      expect(line!.bytes, `bytes logged for ${a.path}`).toBe(sent.get(a.path));
      expect(sent.get(a.path)).toBeGreaterThan(0);
    }
    expect(log.text()).not.toContain('secret-in-query');

    // Every line (the sync's bootloader lines included) is JSON with each key once.
    const raw = log.text().split('\n').filter((l) => l.trim() !== '');
    expect(raw.some((l) => l.includes('"bootloaders unpacked and switched"'))).toBe(true);
    for (const line of raw) {
      const keys = topLevelKeys(line);
      expect(new Set(keys).size, `duplicate keys in ${line}`).toBe(keys.length);
    }
  });
});
