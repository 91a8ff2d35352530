import { readdir, readFile, readlink, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEnv, makeKey, type Env } from '../helpers/env.js';
import { readCurrent, versionsOf } from '../helpers/tree.js';
import { createLogger, type Logger } from '../../src/log.js';
import { loadKeyring } from '../../src/pgp/keyring.js';
import { verifyClearsigned } from '../../src/pgp/verify.js';
import { writeHold } from '../../src/store/hold.js';
import { Layout } from '../../src/store/layout.js';
import { readManifest } from '../../src/store/manifest.js';
import type { SyncReport } from '../../src/mirror/sync.js';

const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';
/** What only the proven no-op says (sync/unchanged.ts). */
const PROVEN = /every document answered 304; config, keys and store as before/;

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** A logger whose messages the test reads. */
function capture(): { logger: Logger; messages: () => string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  return { logger, messages: () => lines.map((l) => (JSON.parse(l) as { msg: string }).msg) };
}

/** A sync whose log is read: was the no-op proven, and how many requests did upstream see. */
async function syncLogged(e: Env, config = e.config()): Promise<{ r: SyncReport; proven: boolean; requests: number; messages: string[] }> {
  const { logger, messages } = capture();
  const before = e.server.log.length;
  const r = await e.sync({ config, logger });
  return { r, proven: messages().some((m) => PROVEN.test(m)), requests: e.server.log.length - before, messages: messages() };
}

const current = async (e: Env) => basename(await readlink(join(e.dataDir, 'current')));

describe('sync: a no-op proven from what current was made from', () => {
  it('is taken when every document answers 304 and nothing else moved: one conditional request each, the same report', async () => {
    env = await makeEnv();
    const config = env.config([{ filters: [['release=noble'], ['release=nobel']] }]);
    const first = await syncLogged(env, config);
    expect(first.proven).toBe(false);
    expect(first.r.warnings.map((w) => w.term)).toEqual(['release=nobel']);
    const snap = await current(env);
    const before = env.server.log.length;
    const again = await syncLogged(env, config);
    expect(again.proven).toBe(true);
    expect(again.r).toMatchObject({ result: 'ok', published: false, snapshot: snap, failures: [], downloaded: { files: 0, bytes: 0 } });
    expect(again.r.plan).toEqual({ changes: [], filesToFetch: 0, bytesToFetch: 0 });
    // The filter warning is said again: the same inputs give the same warnings.
    expect(again.r.warnings).toEqual(first.r.warnings);
    const reqs = env.server.log.slice(before);
    expect(reqs.length).toBe(1 + env.upstream.products.size);
    expect(reqs.every((q) => q.conditional && q.status === 304)).toBe(true);
    expect(again.r.sources).toEqual([{ name: 'stable', result: 'ok', requests: reqs.length, changedDocuments: 0 }]);
    expect(await current(env)).toBe(snap);
  });

  it('is not taken when a document changed; the change is published, each document asked for once, and the next resync is proven again', async () => {
    env = await makeEnv();
    await env.sync();
    expect((await syncLogged(env)).proven).toBe(true);
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    const changed = await syncLogged(env);
    expect(changed.proven).toBe(false);
    expect(changed.r.published).toBe(true);
    expect(versionsOf(await readCurrent(env.dataDir))[NOBLE_AMD64]).toEqual(['20250801']);
    // What the probe fetched is what the sync read: no document is requested twice.
    const metadata = changed.requests - changed.r.downloaded.files;
    expect(metadata).toBe(1 + env.upstream.products.size);
    expect((await syncLogged(env)).proven).toBe(true);
  });

  it('is not taken when the filters changed, and the narrower selection is published', async () => {
    env = await makeEnv();
    await env.sync();
    const all = Object.keys(versionsOf(await readCurrent(env.dataDir)));
    expect((await syncLogged(env)).proven).toBe(true);
    const narrow = env.config([{ filters: [['release=noble']] }]);
    const r = await syncLogged(env, narrow);
    expect(r.proven).toBe(false);
    expect(r.r.published).toBe(true);
    const kept = Object.keys(versionsOf(await readCurrent(env.dataDir)));
    expect(kept).toContain(NOBLE_AMD64);
    expect(kept.length).toBeLessThan(all.length);
    expect(kept.every((p) => p.includes(':24.04:'))).toBe(true);
    expect((await syncLogged(env, narrow)).proven).toBe(true);
  });

  it('is not taken when the signing key file changed in place: the tree is re-signed with the new key', async () => {
    env = await makeEnv();
    const keyFile = join(env.dir, 'mirror.asc');
    await writeFile(keyFile, (await makeKey(env.dir, 'mirror-a')).privateKey.armor());
    const config = env.config([{}], { publish: { signingKey: keyFile } });
    await env.sync({ config });
    expect((await syncLogged(env, config)).proven).toBe(true);
    const next = await makeKey(env.dir, 'mirror-b');
    await writeFile(keyFile, next.privateKey.armor());
    const r = await syncLogged(env, config);
    expect(r.proven).toBe(false);
    expect(r.r.published).toBe(true);
    const index = await readFile(join(env.dataDir, 'current', 'streams', 'v1', 'index.sjson'), 'utf8');
    await expect(verifyClearsigned(index, await loadKeyring(next.keyring), 'index.sjson')).resolves.toBeDefined();
  });

  it('is not taken when a file of the current snapshot left the store: it is fetched again and the tree republished', async () => {
    env = await makeEnv();
    await env.sync();
    expect((await syncLogged(env)).proven).toBe(true);
    const layout = new Layout(env.dataDir);
    const manifest = await readManifest(layout, await current(env));
    const lost = Object.values(manifest.files)[0]!.sha256;
    await unlink(layout.blob(lost));
    const r = await syncLogged(env);
    expect(r.proven).toBe(false);
    expect(r.r.downloaded.files).toBe(1);
    expect(r.r.published).toBe(true);
    expect(await readdir(join(env.dataDir, 'blobs', 'sha256', lost.slice(0, 2)))).toContain(lost);
    expect((await syncLogged(env)).proven).toBe(true);
  });

  it('is not taken while a rollback hold is set: the full sync keeps current where rollback put it, and says so', async () => {
    env = await makeEnv();
    await env.sync();
    const layout = new Layout(env.dataDir);
    const a = await current(env);
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    await env.sync();
    const b = await current(env);
    // Rolled back to b itself, with a newer tree upstream: the hold keeps b, and only the full sync says why.
    await writeHold(layout, { snapshot: b, newest: a, newestFingerprint: (await readManifest(layout, b)).fingerprint, since: new Date().toISOString() });
    const held = await syncLogged(env);
    expect(held.proven).toBe(false);
    expect(held.messages.some((m) => m.includes('where "rollback" put it'))).toBe(true);
    expect(await current(env)).toBe(b);
  });

  it('is not taken when the record or the config digest does not match, and never in a dry run', async () => {
    env = await makeEnv();
    await env.sync();
    const layout = new Layout(env.dataDir);
    await writeFile(layout.unchangedFile, '{not json');
    expect((await syncLogged(env)).proven).toBe(false);
    expect((await syncLogged(env)).proven).toBe(true);
    const dry = capture();
    await env.sync({ dryRun: true, logger: dry.logger });
    expect(dry.messages().some((m) => PROVEN.test(m))).toBe(false);
    expect((await syncLogged(env, env.config([{ maxVersions: 2 }]))).proven).toBe(false);
  });
});
