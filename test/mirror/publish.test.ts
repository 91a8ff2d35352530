import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobStore } from '../../src/store/blobs.js';
import { collectGarbage } from '../../src/store/gc.js';
import { Layout } from '../../src/store/layout.js';
import { acquireLock } from '../../src/store/lock.js';
import { LockedError } from '../../src/errors.js';
import { parseIndex, parseProducts } from '../../src/simplestreams/parse.js';
import { validateForMaas } from '../../src/simplestreams/maas-rules.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { readCurrent, walk } from '../helpers/tree.js';

const run = promisify(execFile);
const BIN = join(import.meta.dirname, '../../bin/maas-mirror.js');
const NOBLE_AMD64 = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

let env: Env | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

async function writeConfig(e: Env, extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(e.dir, 'maas-mirror.json.yaml');
  const cfg = e.config();
  await writeFile(
    file,
    JSON.stringify({
      dataDir: e.dataDir,
      sources: [{ name: 'stable', url: e.server.url, keyring: e.key.keyring }],
      download: { retries: 1, connectTimeout: '2s', idleTimeout: '2s' },
      ...extra,
    }),
  );
  void cfg;
  return file;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('publish: signatures that gpgv accepts', () => {
  it('every .sjson and .json.gpg verifies with the exported binary key, and the tree passes every MAAS rule', async () => {
    env = await makeEnv();
    const config = await writeConfig(env);
    const synced = await cli(['sync', '--config', config]);
    expect(synced.stderr).toBe('');
    expect(synced.code).toBe(0);
    const keyring = join(env.dir, 'mirror.gpg');
    const exported = await cli(['keys', 'export', '--config', config, '-o', keyring]);
    expect(exported.code).toBe(0);
    const root = await realpath(join(env.dataDir, 'current'));
    const files = await walk(join(root, 'streams'));
    const sjson = files.filter((f) => f.endsWith('.sjson'));
    const detached = files.filter((f) => f.endsWith('.json.gpg'));
    expect(sjson.length).toBe(4);
    expect(detached.length).toBe(4);
    for (const f of sjson) await run('gpgv', ['--keyring', keyring, f]);
    for (const f of detached) await run('gpgv', ['--keyring', keyring, f, f.replace(/\.gpg$/, '')]);
    // A tampered copy must fail: the check above is not vacuous.
    const tampered = join(env.dir, 'tampered.sjson');
    await writeFile(tampered, (await readFile(sjson[0]!, 'utf8')).replace('"format"', '"formaT"'));
    await expect(run('gpgv', ['--keyring', keyring, tampered])).rejects.toThrow();

    const tree = await readCurrent(env.dataDir);
    const index = parseIndex(await readFile(join(root, 'streams/v1/index.json'), 'utf8'), 'index.json');
    const products = new Map();
    for (const e of Object.values(index.index)) {
      products.set(e.path, parseProducts(await readFile(join(root, e.path), 'utf8'), e.path));
    }
    expect(validateForMaas(index, products)).toEqual([]);
    expect(tree.products.size).toBe(3);
  });
});

describe('publish: atomic switch', () => {
  it('readers of current always see one complete tree while snapshots are published', async () => {
    env = await makeEnv();
    await env.sync();
    let stop = false;
    let reads = 0;
    const problems: string[] = [];
    const reader = (async () => {
      while (!stop) {
        try {
          const root = await realpath(join(env!.dataDir, 'current'));
          const index = JSON.parse(await readFile(join(root, 'streams/v1/index.json'), 'utf8'));
          for (const e of Object.values(index.index) as { path: string; products: string[] }[]) {
            const doc = JSON.parse(await readFile(join(root, e.path), 'utf8'));
            if (Object.keys(doc.products).sort().join() !== e.products.join()) problems.push(`mismatch in ${root}`);
            for (const p of Object.values(doc.products) as { versions: Record<string, { items: Record<string, { path: string; size: number }> }> }[])
              for (const v of Object.values(p.versions))
                for (const i of Object.values(v.items)) {
                  const st = await stat(join(root, i.path));
                  if (st.size !== i.size) problems.push(`size of ${i.path}`);
                }
          }
          reads++;
        } catch (err) {
          // keepSnapshots is 10 below, so nothing is pruned: any error, ENOENT included, is a torn read.
          problems.push(String(err));
        }
      }
    })();
    for (let i = 0; i < 4; i++) {
      env.upstream.addVersion(NOBLE_AMD64, `2025090${i}`);
      await env.upstream.write();
      expect((await env.sync({ config: env.config([{}], { publish: { keepSnapshots: 10 } }) })).published).toBe(true);
    }
    stop = true;
    await reader;
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(4);
  });
});

describe('gc and retention', () => {
  it('keeps keepSnapshots snapshots and deletes blobs only they referenced; dry run reports the same without deleting', async () => {
    env = await makeEnv();
    const config = env.config([{}], { publish: { keepSnapshots: 1 } });
    await env.sync({ config });
    const layout = new Layout(env.dataDir);
    const store = new BlobStore(layout);
    const before = await store.totals();
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    // keepSnapshots 10 here: the sync's own gc prunes nothing, so the dry run below has something to find.
    const r = await env.sync({ config: env.config([{}], { publish: { keepSnapshots: 10 } }) });
    expect(r.gc!.blobsRemoved).toBe(0);
    const dry = await collectGarbage({ layout, store, keepSnapshots: 1, partialProtectionMs: 0, dryRun: true });
    expect(dry.snapshotsRemoved.length).toBe(1);
    expect(dry.blobsRemoved).toBe(4);
    expect((await store.totals()).blobs).toBe(before.blobs + 4);
    const real = await collectGarbage({ layout, store, keepSnapshots: 1, partialProtectionMs: 0 });
    expect({ ...real, dryRun: true }).toEqual(dry);
    expect((await store.totals()).blobs).toBe(before.blobs);
    expect((await readdir(layout.snapshotsDir)).length).toBe(1);
  });

  it('cli gc --dry-run prints what it would free', async () => {
    env = await makeEnv();
    const config = await writeConfig(env);
    expect((await cli(['sync', '--config', config])).code).toBe(0);
    const out = await cli(['gc', '--dry-run', '--json', '--config', config]);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ dryRun: true, blobsRemoved: 0 });
  });
});

describe('the lock', () => {
  it('a second sync while one holds the lock exits 75 naming the holder', async () => {
    env = await makeEnv();
    const config = await writeConfig(env);
    const layout = new Layout(env.dataDir);
    const lock = await acquireLock(layout.lockFile, 'sync sync-held-by-test');
    try {
      const out = await cli(['sync', '--config', config]);
      expect(out.code).toBe(75);
      expect(out.stderr).toContain('sync sync-held-by-test');
      expect(out.stderr).toContain(`pid ${process.pid}`);
      await expect(env.sync()).rejects.toBeInstanceOf(LockedError);
    } finally {
      await lock.release();
    }
    expect((await cli(['sync', '--config', config])).code).toBe(0);
  });

  it('takes over a lock left by a process that no longer exists', async () => {
    env = await makeEnv();
    const layout = new Layout(env.dataDir);
    const { hostname } = await import('node:os');
    await (await import('node:fs/promises')).mkdir(env.dataDir, { recursive: true });
    await writeFile(layout.lockFile, JSON.stringify({ pid: 2 ** 22 + 7, host: hostname(), command: 'sync', since: new Date().toISOString() }));
    expect((await env.sync()).result).toBe('ok');
  });
});

describe('cli', () => {
  it('exits 2 with every problem listed for a bad config, touching nothing', async () => {
    env = await makeEnv();
    const file = join(env.dir, 'bad.yaml');
    await writeFile(file, `dataDir: ${env.dataDir}\nsources:\n  - name: x\n    url: nope\n    maxVersions: -1\n`);
    const out = await cli(['sync', '--config', file]);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('sources[0].url');
    expect(out.stderr).toContain('sources[0].maxVersions');
    expect(out.stderr).toContain('sources[0].keyring');
    await expect(stat(env.dataDir)).rejects.toThrow();
  });

  it('sync --dry-run prints the plan and downloads nothing', async () => {
    env = await makeEnv();
    const config = await writeConfig(env);
    const out = await cli(['sync', '--dry-run', '--config', config, '--json']);
    expect(out.code).toBe(0);
    const report = JSON.parse(out.stdout);
    expect(report.plan.filesToFetch).toBeGreaterThan(10);
    expect(report.plan.changes.some((c: { action: string; productId: string }) => c.action === '+' && c.productId === NOBLE_AMD64)).toBe(true);
    expect(env.server.log.filter((l) => !l.path.startsWith('streams/'))).toEqual([]);
    await expect(stat(join(env.dataDir, 'blobs'))).rejects.toThrow();
    // Nothing written to dataDir at all (no state, no key, no lock).
    expect(await readdir(env.dataDir).catch(() => [])).toEqual([]);
  });

  it('snapshots lists them and rollback switches current back', async () => {
    env = await makeEnv();
    const config = await writeConfig(env);
    await cli(['sync', '--config', config]);
    const first = await readlink(join(env.dataDir, 'current'));
    env.upstream.addVersion(NOBLE_AMD64, '20250801');
    await env.upstream.write();
    await cli(['sync', '--config', config]);
    const list = JSON.parse((await cli(['snapshots', '--json', '--config', config])).stdout);
    expect(list.length).toBe(2);
    expect(list[1].current).toBe(true);
    const rb = await cli(['rollback', '--config', config]);
    expect(rb.code).toBe(0);
    expect(await readlink(join(env.dataDir, 'current'))).toBe(first);
    const second = `snapshots/${list[1].id}`;

    // The next (scheduled) sync must not put back what the operator rolled away from.
    const held = await cli(['sync', '--config', config]);
    expect(held.code).toBe(0);
    expect(held.stdout + held.stderr).toContain(`maas-mirror rollback ${list[1].id}`);
    expect(await readlink(join(env.dataDir, 'current'))).toBe(first);
    // Going forward by hand lifts the hold.
    expect((await cli(['rollback', list[1].id, '--config', config])).code).toBe(0);
    expect(await readlink(join(env.dataDir, 'current'))).toBe(second);
    await expect(stat(join(env.dataDir, 'state', '_hold.json'))).rejects.toThrow();

    // Rolled back again, a change upstream is published as usual and ends the hold.
    expect((await cli(['rollback', '--config', config])).code).toBe(0);
    env.upstream.addVersion(NOBLE_AMD64, '20250901');
    await env.upstream.write();
    expect((await cli(['sync', '--config', config])).code).toBe(0);
    const now = await readlink(join(env.dataDir, 'current'));
    expect([first, second]).not.toContain(now);
    await expect(stat(join(env.dataDir, 'state', '_hold.json'))).rejects.toThrow();
    const bad = await cli(['rollback', 'no-such-snapshot', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('maas-mirror snapshots');
  });

  it('verify quarantines a corrupt blob and the next sync fetches it again', async () => {
    env = await makeEnv();
    const config = await writeConfig(env);
    await cli(['sync', '--config', config]);
    const store = new BlobStore(new Layout(env.dataDir));
    const victim = (await (async () => { for await (const b of store.list()) return b; })())!;
    const { chmod } = await import('node:fs/promises');
    await chmod(store.path(victim.sha256), 0o644);
    const bytes = await readFile(store.path(victim.sha256));
    bytes[0] = bytes[0]! ^ 1;
    await writeFile(store.path(victim.sha256), bytes);
    const v = await cli(['verify', '--config', config]);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain(`CORRUPT ${victim.sha256}`);
    expect(await store.has(victim.sha256)).toBe(false);
    expect((await readdir(join(env.dataDir, 'quarantine'))).length).toBe(1);
    const again = await cli(['sync', '--config', config]);
    expect(again.code).toBe(0);
    expect(await store.has(victim.sha256)).toBe(true);
    expect((await cli(['verify', '--config', config])).code).toBe(0);
  });
});

describe('gc: partial files', () => {
  it('removes partial files older than the protection window and keeps younger ones', async () => {
    env = await makeEnv();
    const layout = new Layout(env.dataDir);
    const { mkdir, utimes } = await import('node:fs/promises');
    await mkdir(layout.partialDir, { recursive: true });
    const old = layout.partial('a'.repeat(64));
    const young = layout.partial('b'.repeat(64));
    await writeFile(old, Buffer.alloc(1000));
    await writeFile(young, Buffer.alloc(10));
    const twoDaysAgo = new Date(Date.now() - 48 * 3600_000);
    await utimes(old, twoDaysAgo, twoDaysAgo);
    const store = new BlobStore(layout);
    const dry = await collectGarbage({ layout, store, keepSnapshots: 3, partialProtectionMs: 24 * 3600_000, dryRun: true });
    expect(dry).toMatchObject({ partialsRemoved: 1, partialBytesFreed: 1000 });
    expect((await readdir(layout.partialDir)).length).toBe(2);
    await collectGarbage({ layout, store, keepSnapshots: 3, partialProtectionMs: 24 * 3600_000 });
    expect(await readdir(layout.partialDir)).toEqual([`${'b'.repeat(64)}.part`]);
  });
});

describe('gc: leftovers of a kill', () => {
  it('removes half-made switch links and half-built snapshots, never current', async () => {
    env = await makeEnv();
    await env.sync();
    const layout = new Layout(env.dataDir);
    const { mkdir, symlink, readlink: rl } = await import('node:fs/promises');
    await symlink('snapshots/x', join(env.dataDir, 'current.tmp-4242'));
    await symlink('bootloaders.d/x', join(env.dataDir, 'bootloaders.tmp-4242'));
    await mkdir(join(layout.snapshotsDir, '.building-20990101T000000000Z-abcdef'), { recursive: true });
    const current = await rl(layout.current);
    await collectGarbage({ layout, store: new BlobStore(layout), keepSnapshots: 3, partialProtectionMs: 0 });
    const left = await readdir(env.dataDir);
    expect(left.filter((n) => n.includes('.tmp-'))).toEqual([]);
    expect((await readdir(layout.snapshotsDir)).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(await rl(layout.current)).toBe(current);
  });
});
