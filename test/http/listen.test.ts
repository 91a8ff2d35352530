import { get as httpGet, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListenError } from '../../src/errors.js';
import { formatListen, startHttpServer } from '../../src/http/index.js';
import { parseListen } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { publishSnapshot, sampleTree, snapshotId, tempDataDir, type TempData } from './fixture.js';
import { PREFIX } from './server.js';

let t: TempData;
const BIG = 'ubuntu/amd64/ga-24.04/noble/stable/20250701/squashfs';
const BIG_SIZE = 64 * 1024 * 1024;
const config = (listen: string[]) => ({ http: { prefix: PREFIX, listen: listen.map((l) => parseListen(l)!), publicUrl: undefined } });

beforeAll(async () => {
  t = await tempDataDir('mm-listen-');
  const tree = sampleTree('l');
  // Larger than the socket buffers: a client that stops reading keeps this download running.
  await publishSnapshot(t.layout, { id: snapshotId(1), metadata: tree.metadata, items: { ...tree.items, [BIG]: Buffer.alloc(BIG_SIZE, 7) } });
});
afterAll(async () => {
  await t.cleanup();
});

describe('startHttpServer', () => {
  it('listens on IPv6 [::1] and IPv4 at once, from config.http.listen', async () => {
    const s = await startHttpServer({ config: config(['[::1]:0', '127.0.0.1:0']), layout: t.layout, logger: silentLogger() });
    try {
      expect(s.addresses.map((a) => a.host)).toEqual(['::1', '127.0.0.1']);
      const v6 = await fetch(`http://${formatListen(s.addresses[0]!)}${PREFIX}streams/v1/index.json`);
      expect(v6.status).toBe(200);
      expect(await v6.text()).toBe(sampleTree('l').metadata['streams/v1/index.json']);
      const v4 = await fetch(`http://${formatListen(s.addresses[1]!)}/keyring.gpg`);
      expect(v4.status).toBe(404);
    } finally {
      await s.close();
    }
    expect(s.servers.every((x) => !x.listening)).toBe(true);
  });

  it('listens on 0.0.0.0 and [::] with the same port (IPv6 kept to IPv6)', async () => {
    const probe = await startHttpServer({ config: config(['127.0.0.1:0']), layout: t.layout, logger: silentLogger() });
    const port = probe.addresses[0]!.port;
    await probe.close();
    const s = await startHttpServer({ config: config([`0.0.0.0:${port}`, `[::]:${port}`]), layout: t.layout, logger: silentLogger() });
    try {
      expect(s.addresses.map((a) => a.host)).toEqual(['0.0.0.0', '::']);
      for (const host of ['127.0.0.1', '[::1]']) {
        const res = await fetch(`http://${host}:${port}${PREFIX}streams/v1/index.json`);
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
    } finally {
      await s.close();
    }
  });

  it('names the address it cannot bind and what to do', async () => {
    const first = await startHttpServer({ config: config(['127.0.0.1:0']), layout: t.layout, logger: silentLogger() });
    try {
      const port = first.addresses[0]!.port;
      const err = await startHttpServer({ config: config([`127.0.0.1:${port}`]), layout: t.layout, logger: silentLogger() }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ListenError);
      expect((err as ListenError).message).toContain(`127.0.0.1:${port}: EADDRINUSE`);
      expect((err as ListenError).code).toBe('MM_HTTP_LISTEN');
    } finally {
      await first.close();
    }
  });

  it('close() waits for a running download, then cuts it after the grace time', async () => {
    const s = await startHttpServer({ config: config(['127.0.0.1:0']), layout: t.layout, logger: silentLogger() });
    const { host, port } = s.addresses[0]!;
    // Reads the first chunk, then stops reading: the server cannot finish the response.
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      httpGet({ host, port, path: `${PREFIX}${BIG}` }, (r) => r.once('data', () => (r.pause(), resolve(r)))).on('error', reject);
    });
    expect(res.statusCode).toBe(200);
    const started = Date.now();
    await s.close(300);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(290);
    expect(waited).toBeLessThan(5000);
    // Cut: the body ends short of its Content-Length.
    const got = await new Promise<{ bytes: number; complete: boolean }>((resolve) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ bytes, complete: res.complete }));
      res.resume();
    });
    expect(got.complete).toBe(false);
    expect(got.bytes).toBeLessThan(BIG_SIZE);
  });

  it('close() returns at once when nothing is running', async () => {
    const s = await startHttpServer({ config: config(['127.0.0.1:0']), layout: t.layout, logger: silentLogger() });
    const res = await fetch(`http://${formatListen(s.addresses[0]!)}${PREFIX}streams/v1/index.json`);
    await res.arrayBuffer();
    const started = Date.now();
    await s.close(3000);
    expect(Date.now() - started).toBeLessThan(2500);
  });
});
